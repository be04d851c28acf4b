//! Files that are replaced whole: the agent's checkpoints, the master's registry, the supervisor's
//! pid file. A crash leaves either the old or the new content, never a torn file.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically: a temp file in the same directory, fsync, rename.
pub(crate) fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let (tmp, mut file) = temp_beside(dir, path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// A new, uniquely named hidden file in `dir` (the same filesystem as `target`, so the rename is atomic).
fn temp_beside(dir: &Path, target: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let f = std::fs::File::create(&tmp)?;
    Ok((tmp, f))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_write_replaces_the_whole_file_and_leaves_no_temp_file_behind() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sub/registry.json");
        super::write(&path, b"first, longer content").expect("first write");
        super::write(&path, b"second").expect("second write");
        assert_eq!(std::fs::read(&path).expect("read back"), b"second");
        let names: Vec<_> = std::fs::read_dir(path.parent().expect("has a parent"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("registry.json")]);
    }
}
