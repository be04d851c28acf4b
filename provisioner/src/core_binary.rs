//! The `dccore` binary dcform installs: found, identified (version, sha256, architecture) and checked
//! before any machine is touched.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Where the core binary was looked for and why it was not usable.
#[derive(Debug, thiserror::Error)]
pub enum CoreBinaryError {
    /// Not found anywhere.
    #[error("no dccore binary found (looked at: {}); build it with `cargo build --release --workspace`, or pass --core-binary FILE / set DCFORM_CORE_BINARY", looked.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    NotFound {
        /// Paths tried, in order.
        looked: Vec<PathBuf>,
    },
    /// Found but not readable or not runnable.
    #[error("{}: cannot use this dccore binary: {reason}", path.display())]
    Unusable {
        /// The binary.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Built for another architecture than the nodes'.
    #[error("{}: dccore is built for {found}, but the nodes are {wanted}; build dccore for {wanted} and pass it with --core-binary", path.display())]
    WrongArch {
        /// The binary.
        path: PathBuf,
        /// Its architecture.
        found: String,
        /// The nodes' architecture.
        wanted: String,
    },
}

/// An identified core binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreBinary {
    /// Where it is.
    pub path: PathBuf,
    /// `dccore --version`'s version.
    pub version: String,
    /// sha256 of the file, hex.
    pub sha256: String,
    /// ELF machine: `x86_64`, `aarch64`, ...
    pub arch: String,
}

/// Finds the core: `explicit` (`--core-binary` or `DCFORM_CORE_BINARY`), else next to the running `dcform`
/// (a workspace build puts both in `target/<profile>/`).
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, CoreBinaryError> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(CoreBinaryError::NotFound {
                looked: vec![p.to_path_buf()],
            })
        };
    }
    let mut looked = Vec::new();
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        // `cargo test` runs dcform from target/<profile>/ too; deps/ holds test binaries, so look one up.
        for d in [dir, dir.parent().unwrap_or(dir)] {
            let p = d.join("dccore");
            if p.is_file() {
                return Ok(p);
            }
            looked.push(p);
        }
    }
    Err(CoreBinaryError::NotFound { looked })
}

/// Identifies the binary at `path`: architecture from its ELF header, hash of its bytes, version by running it.
pub fn identify(path: &Path) -> Result<CoreBinary, CoreBinaryError> {
    let unusable = |reason: String| CoreBinaryError::Unusable {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| unusable(e.to_string()))?;
    let arch = elf_arch(&bytes)
        .ok_or_else(|| unusable("not an ELF executable".into()))?
        .to_string();
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let out = std::process::Command::new(path)
        .arg("--version")
        .output()
        .map_err(|e| unusable(format!("cannot run it: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text
        .split_whitespace()
        .nth(1)
        .filter(|_| out.status.success() && text.starts_with("dccore"))
        .ok_or_else(|| unusable(format!("`dccore --version` printed {:?}", text.trim())))?
        .to_string();
    Ok(CoreBinary {
        path: path.to_path_buf(),
        version,
        sha256,
        arch,
    })
}

/// Checks the binary runs on nodes of architecture `wanted` (as `uname -m` spells it).
pub fn check_arch(core: &CoreBinary, wanted: &str) -> Result<(), CoreBinaryError> {
    if core.arch == wanted {
        Ok(())
    } else {
        Err(CoreBinaryError::WrongArch {
            path: core.path.clone(),
            found: core.arch.clone(),
            wanted: wanted.to_string(),
        })
    }
}

/// The `uname -m` name of an ELF file's machine.
pub fn elf_arch(bytes: &[u8]) -> Option<&'static str> {
    if bytes.len() < 20 || &bytes[..4] != b"\x7fELF" {
        return None;
    }
    // e_machine at offset 18, in the file's byte order (EI_DATA at offset 5: 1 little, 2 big).
    let m = match bytes[5] {
        1 => u16::from_le_bytes([bytes[18], bytes[19]]),
        2 => u16::from_be_bytes([bytes[18], bytes[19]]),
        _ => return None,
    };
    Some(match m {
        0x3e => "x86_64",
        0xb7 => "aarch64",
        0x03 => "i686",
        0x28 => "armv7l",
        0xf3 => "riscv64",
        0x15 => "ppc64le",
        0x16 => "s390x",
        _ => "unknown",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_machine_is_read_from_the_header() {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[5] = 1;
        h[18] = 0xb7;
        assert_eq!(elf_arch(&h), Some("aarch64"));
        h[18] = 0x3e;
        assert_eq!(elf_arch(&h), Some("x86_64"));
        assert_eq!(elf_arch(b"#!/bin/sh\necho hi\n"), None);
    }

    #[test]
    fn the_running_test_binary_is_an_elf_of_this_machine() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(elf_arch(&exe), Some(std::env::consts::ARCH));
    }

    #[test]
    fn a_script_is_refused_as_not_elf_and_wrong_arch_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("dccore");
        std::fs::write(&p, "#!/bin/sh\necho dccore 9.9\n").unwrap();
        let err = identify(&p).unwrap_err();
        assert!(err.to_string().contains("not an ELF executable"), "{err}");
        let core = CoreBinary {
            path: p,
            version: "1".into(),
            sha256: "x".into(),
            arch: "aarch64".into(),
        };
        let err = check_arch(&core, "x86_64").unwrap_err();
        assert!(
            err.to_string()
                .contains("built for aarch64, but the nodes are x86_64"),
            "{err}"
        );
        assert!(matches!(
            locate(Some(Path::new("/nonexistent/dccore"))),
            Err(CoreBinaryError::NotFound { .. })
        ));
    }
}
