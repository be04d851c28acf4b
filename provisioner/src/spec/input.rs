//! Reading the files a user names (definitions, `-var-file`s, `file()` arguments, saved plans):
//! one function, so every one of them refuses what would hang or flood the same way. A FIFO,
//! socket or device is not read (a FIFO with no writer blocks a read forever), and nothing larger
//! than [`MAX_INPUT_BYTES`] is read whole.
//!
//! Being the one way in, it is also where [`recorded`] sees every file a load read: what a saved
//! plan keeps of its definition (see [`super::saved`]).

use std::cell::RefCell;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Files read while recording: each path with the bytes read from it.
type Reads = Vec<(PathBuf, Vec<u8>)>;

thread_local! {
    /// The files read on this thread while [`recorded`] runs (`None`: not recording).
    static READS: RefCell<Option<Reads>> = const { RefCell::new(None) };
}

/// Runs `f` and returns, with its result, every file [`read_regular_file`] read meanwhile (and what
/// [`note_read`] added), in order. Loads are synchronous, so one thread sees all of one load's reads.
pub fn recorded<T>(f: impl FnOnce() -> T) -> (T, Vec<(PathBuf, Vec<u8>)>) {
    let previous = READS.with(|r| r.borrow_mut().replace(Vec::new()));
    let out = f();
    let reads = READS.with(|r| std::mem::replace(&mut *r.borrow_mut(), previous));
    (out, reads.unwrap_or_default())
}

/// Adds a read made some other way (a definition converted in memory) to the recording, if any.
pub fn note_read(path: &Path, bytes: &[u8]) {
    READS.with(|r| {
        if let Some(reads) = r.borrow_mut().as_mut() {
            reads.push((path.to_path_buf(), bytes.to_vec()));
        }
    });
}

/// The largest input file read (a cluster definition is kilobytes; this leaves room for
/// `file()`-loaded keys, scripts and generated definitions).
pub const MAX_INPUT_BYTES: u64 = 16 << 20;

/// Longest piece of user text repeated inside an error message.
pub const MAX_ECHO_CHARS: usize = 200;

/// Reads a regular file of at most [`MAX_INPUT_BYTES`]; the error says what the path is instead
/// and what would be valid.
pub fn read_regular_file(path: &Path) -> std::io::Result<Vec<u8>> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        let what = kind_of(&meta);
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "it is {what}, not a regular file; give a file's path (or write the content to a file first)"
            ),
        ));
    }
    if meta.len() > MAX_INPUT_BYTES {
        return Err(too_large(meta.len()));
    }
    // The size can change between the check and the read: read at most one byte more than allowed.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)?
        .take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    note_read(path, &bytes);
    Ok(bytes)
}

fn too_large(len: u64) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!(
            "it is {} MiB, larger than the {} MiB dcform reads",
            len >> 20,
            MAX_INPUT_BYTES >> 20
        ),
    )
}

#[cfg(unix)]
fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a folder"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

#[cfg(not(unix))]
fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    if meta.is_dir() {
        "a folder"
    } else {
        "not a regular file"
    }
}

/// `text` for an error message: whole if short, else its first [`MAX_ECHO_CHARS`] characters and
/// a note of how much was left out (a 5 MB value must not be echoed whole).
pub fn echo(text: &str) -> String {
    let mut chars = text.char_indices();
    match chars.nth(MAX_ECHO_CHARS) {
        None => text.to_string(),
        Some((cut, _)) => format!(
            "{}… ({} more bytes not shown)",
            &text[..cut],
            text.len() - cut
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found: a FIFO as the definition or `-var-file` hung dcform forever.
    #[test]
    fn a_fifo_is_refused_at_once_instead_of_read() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("defs.hcl");
        let ok = dc_support::testing::output_within(
            std::time::Duration::from_secs(10),
            std::process::Command::new("mkfifo").arg(&fifo),
        );
        assert!(ok.status.success(), "mkfifo: {ok:?}");
        let e = read_regular_file(&fifo).unwrap_err();
        assert!(e.to_string().contains("FIFO"), "{e}");
        let e = read_regular_file(d.path()).unwrap_err();
        assert!(e.to_string().contains("folder"), "{e}");
    }

    #[test]
    fn a_file_over_the_limit_is_refused_and_a_small_one_read() {
        let d = tempfile::tempdir().unwrap();
        let big = d.path().join("big");
        let f = std::fs::File::create(&big).unwrap();
        f.set_len(MAX_INPUT_BYTES + 1).unwrap();
        let e = read_regular_file(&big).unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
        let small = d.path().join("small");
        std::fs::write(&small, "x = 1").unwrap();
        assert_eq!(read_regular_file(&small).unwrap(), b"x = 1");
    }

    #[test]
    fn long_text_is_echoed_cut_with_a_note() {
        assert_eq!(echo("short"), "short");
        let long = "é".repeat(5_000_000);
        let e = echo(&long);
        assert!(e.chars().count() < MAX_ECHO_CHARS + 50, "{}", e.len());
        assert!(e.contains("more bytes not shown"), "{e}");
    }
}
