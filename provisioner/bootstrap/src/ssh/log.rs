//! The per-host session log: every command, its output and its result, appended to one file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use super::SshError;

/// Appends lines to the session log, if one was asked for. Writes are short and never cross an
/// `.await`, so a std mutex is right here.
#[derive(Debug, Default)]
pub(crate) struct SessionLog {
    file: Option<(PathBuf, Mutex<std::fs::File>)>,
}

impl SessionLog {
    pub(crate) fn open(path: Option<&Path>) -> Result<Self, SshError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| SshError::Io {
                what: format!("create log directory {}", dir.display()),
                source,
            })?;
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| SshError::Io {
                what: format!("open session log {}", path.display()),
                source,
            })?;
        Ok(Self {
            file: Some((path.to_path_buf(), Mutex::new(f))),
        })
    }

    pub(crate) fn path(&self) -> Option<PathBuf> {
        self.file.as_ref().map(|(p, _)| p.clone())
    }

    /// Writes one line, prefixed with the Unix time; log failures never fail the bootstrap.
    pub(crate) fn line(&self, text: &str) {
        let Some((_, f)) = &self.file else { return };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        if let Ok(mut f) = f.lock() {
            let _ = writeln!(f, "[{now:.3}] {text}");
        }
    }
}
