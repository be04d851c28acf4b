//! A ustar archive of one file: what `upload_to_container` takes (the docker provider writes the
//! node's authorized key and files into containers with it).

/// A ustar archive holding one regular file owned by root: all `upload_to_container` needs.
pub(super) fn single_file_tar(name: &str, mode: u32, data: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    let field =
        |h: &mut [u8; 512], at: usize, bytes: &[u8]| h[at..at + bytes.len()].copy_from_slice(bytes);
    field(&mut h, 0, name.as_bytes());
    field(&mut h, 100, format!("{mode:07o}\0").as_bytes());
    field(&mut h, 108, b"0000000\0");
    field(&mut h, 116, b"0000000\0");
    field(&mut h, 124, format!("{:011o}\0", data.len()).as_bytes());
    field(&mut h, 136, b"00000000000\0");
    field(&mut h, 148, b"        "); // checksum counts as spaces while it is computed
    h[156] = b'0'; // regular file
    field(&mut h, 257, b"ustar\0");
    field(&mut h, 263, b"00");
    field(&mut h, 265, b"root");
    field(&mut h, 297, b"root");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    field(&mut h, 148, format!("{sum:06o}\0 ").as_bytes());
    let mut out = Vec::with_capacity(512 + data.len() + 1536);
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.extend_from_slice(&[0u8; 1024]); // end of archive
    out
}

#[cfg(test)]
mod tar_tests {
    #[test]
    fn the_archive_is_read_by_tar_with_name_mode_owner_and_content() {
        let dir = tempfile::tempdir().unwrap();
        let tar = dir.path().join("a.tar");
        std::fs::write(
            &tar,
            super::single_file_tar("dccore", 0o755, b"#!/bin/sh\necho hi\n"),
        )
        .unwrap();
        let tar_of = |args: &[&str]| {
            dc_support::testing::output_within(
                std::time::Duration::from_secs(10),
                std::process::Command::new("tar").args(args).arg(&tar),
            )
        };
        let list = tar_of(&["-tvf"]);
        let text = String::from_utf8_lossy(&list.stdout);
        assert!(
            list.status.success(),
            "{}",
            String::from_utf8_lossy(&list.stderr)
        );
        assert!(text.starts_with("-rwxr-xr-x root/root"), "{text}");
        assert!(text.trim_end().ends_with(" dccore"), "{text}");
        let out = tar_of(&["-xOf"]);
        assert_eq!(out.stdout, b"#!/bin/sh\necho hi\n");
    }
}
