//! Writing a report file: private (0600), replaced whole, never through a
//! symlink (see [`crate::private::write_atomic`]).

use std::path::Path;

use crate::error::Result;

/// Writes next to the target, then renames, so a reader never sees half a
/// report; refuses a target that is a symlink.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::private::write_atomic(path, bytes)
}

/// [`write_file`] for a path the user gave (`report --out`): the file
/// keeps the user's umask instead of being private.
pub fn write_user_file(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::private::write_atomic_for_user(path, bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_report_is_replaced_whole_and_no_temporary_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.html");
        super::write_file(&path, b"first").unwrap();
        super::write_file(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["report.html"]);
        let e = super::write_file(&dir.path().join("missing/report.html"), b"x").unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
    }
}
