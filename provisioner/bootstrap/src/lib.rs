//! Node bootstrap: the SSH engine, install templates and the node image.
