//! Integration tests of dcform-bootstrap against real OpenSSH sshd in containers built from the
//! node image. Needs Docker Engine (and mmdebstrap to build the image the first time); without
//! Docker the tests fail, unless skips are allowed (`DCFORM_TEST_ALLOW_SKIP=1`, a local-only run).

mod harness;
mod install;
mod proxy;
mod ssh;
