//! Reading a file an input names, bounded. A policy, a scenario or a flag can name any path:
//! a secret mounted by mistake as a directory, `/dev/zero`, a FIFO nobody writes to, or a
//! multi-gigabyte file. Each would hang the reader or take all its memory, so every such file
//! is read here: only a regular file, and at most a limit's bytes (the limits are the
//! callers', set for what each file holds).

use std::io::Read as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// The regular file at `path`, open for reading. Opened without blocking, so a FIFO is
/// refused rather than waited on, and checked on the open file, so a path swapped after a
/// look is not read either.
pub fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a regular file (a directory, a FIFO or a device)",
        ));
    }
    Ok(file)
}

/// The bytes of the regular file at `path` ([`open_regular`]), refused past `limit` bytes.
/// Errors say what was wrong with the file (`InvalidData`).
pub fn read_regular(path: &Path, limit: usize) -> std::io::Result<Vec<u8>> {
    let file = open_regular(path)?;
    let mut bytes = Vec::new();
    let most = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    file.take(most).read_to_end(&mut bytes)?;
    if bytes.len() > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {limit} bytes"),
        ));
    }
    Ok(bytes)
}

/// [`read_regular`], as UTF-8 text.
pub fn read_regular_text(path: &Path, limit: usize) -> std::io::Result<String> {
    String::from_utf8(read_regular(path, limit)?)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A regular file within the limit is read whole; one past it, a directory, a device and
    /// a FIFO with no writer are refused at once, each saying why.
    #[test]
    fn only_a_regular_file_within_the_limit_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "s3cret\n").unwrap();
        assert_eq!(read_regular_text(&file, 7).unwrap(), "s3cret\n");
        let too_large = read_regular(&file, 6).unwrap_err();
        assert_eq!(too_large.to_string(), "larger than 6 bytes");
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        for path in [dir.path(), Path::new("/dev/zero"), fifo.as_path()] {
            let error = read_regular(path, 1 << 20).unwrap_err();
            assert!(
                error.to_string().contains("not a regular file"),
                "{}: {error}",
                path.display()
            );
        }
    }
}
