//! Writing a report file.

use std::path::Path;

use crate::error::{Error, Result};

/// Writes next to the target, then renames, so a reader never sees half a report.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "report".into());
    let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
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
