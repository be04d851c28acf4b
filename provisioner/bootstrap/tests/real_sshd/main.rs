//! Integration tests of dcform-bootstrap against real OpenSSH sshd in containers built from the
//! node image. Needs Docker Engine (and mmdebstrap to build the image the first time); without
//! Docker the tests skip with a note, unless `CI=true`, where they fail.

mod harness;
mod install;
mod proxy;
mod ssh;
