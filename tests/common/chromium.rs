//! Headless Chromium, for the tests that render HTML reports.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The Chromium binary: `CAIRN_CHROMIUM`, else `chromium` or
/// `chromium-browser` on the PATH. Missing, the test fails: it is never
/// skipped.
pub fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("CAIRN_CHROMIUM") {
        return PathBuf::from(p);
    }
    for name in ["chromium", "chromium-browser"] {
        if let Ok(o) = Command::new("sh").args(["-c", &format!("command -v {name}")]).output() {
            let p = text(&o.stdout).trim().to_string();
            if o.status.success() && !p.is_empty() {
                return PathBuf::from(p);
            }
        }
    }
    panic!(
        "headless Chromium is needed to test the HTML report, and it is not installed.\n\
         Install it with `sudo apt-get install -y chromium` (Debian/Ubuntu; scripts/test.sh does this), \
         or point CAIRN_CHROMIUM at a Chromium or Chrome binary."
    );
}

/// Runs headless Chromium on `page` with `args`; gives up after two
/// minutes. Returns its stdout, and its stderr for messages. Both go
/// through files: a full pipe would block Chromium while we wait.
pub fn run_chromium(page: &Path, work: &Path, args: &[&str]) -> (String, String) {
    let (out, err) = (work.join("chromium.out"), work.join("chromium.err"));
    let mut child = Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"])
        .arg(format!("--user-data-dir={}", work.join("profile").display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("start chromium");
    // Waits for chromium to exit, however loaded the machine: no time limit
    // of its own (CI's limit stops a hang).
    let status = child.wait().expect("wait for chromium");
    let err = std::fs::read_to_string(&err).unwrap_or_default();
    assert!(status.success(), "chromium {args:?} failed ({status}): {err}");
    (std::fs::read_to_string(&out).unwrap(), err)
}
