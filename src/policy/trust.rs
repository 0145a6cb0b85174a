//! Policy files must be as trusted as what they run.
//!
//! A policy's hooks, command source and password command run with `sh -c`
//! as the user cairn runs as, which for the daemon is root. Whoever can
//! write a policy file, or add one to the policy directory, runs commands
//! as root. So when cairn runs as root, a policy file or directory that is
//! writable by group or others, or owned by another user than root, is
//! refused: the daemon skips it and shows why, as it does an invalid file,
//! and `cairn policy validate` reports it. The message names the file and
//! the `chmod`/`chown` that fixes it.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::diag::{file_error, Diagnostic};

/// Why `path` (with `meta`) cannot be trusted by a process running as
/// root, with the fix; `None` when it can.
pub(crate) fn problem(path: &Path, meta: &Metadata) -> Option<String> {
    problem_of(path, meta.mode(), meta.uid(), meta.is_dir())
}

fn problem_of(path: &Path, mode: u32, uid: u32, is_dir: bool) -> Option<String> {
    let what = if is_dir { "the policy directory" } else { "a policy file" };
    let mut why = Vec::new();
    let mut fix = Vec::new();
    if uid != 0 {
        why.push(format!("is owned by uid {uid}, not root"));
        fix.push(format!("chown root: {}", path.display()));
    }
    let writable = match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => Some("group and others"),
        (true, false) => Some("its group"),
        (false, true) => Some("others"),
        (false, false) => None,
    };
    if let Some(who) = writable {
        why.push(format!("is writable by {who} (mode {:04o})", mode & 0o7777));
        fix.push(format!("chmod go-w {}", path.display()));
    }
    if why.is_empty() {
        return None;
    }
    Some(format!(
        "refusing to trust {what} that {}: its commands would run as root. Fix: `{}`",
        why.join(" and "),
        fix.join(" && ")
    ))
}

/// The diagnostic for an untrusted `path`, when this process runs as root.
pub(crate) fn check(path: &Path, meta: &Metadata) -> Option<Diagnostic> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    problem(path, meta).map(|m| file_error(path, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writable_by_others_or_owned_by_another_user_is_refused_with_its_fix() {
        let p = Path::new("/etc/cairn/policies/web.toml");
        assert_eq!(problem_of(p, 0o100644, 0, false), None);
        assert_eq!(problem_of(p, 0o100600, 0, false), None);
        assert_eq!(problem_of(Path::new("/etc/cairn/policies"), 0o040755, 0, true), None);
        assert_eq!(
            problem_of(p, 0o100666, 0, false).unwrap(),
            "refusing to trust a policy file that is writable by group and others (mode 0666): its commands \
             would run as root. Fix: `chmod go-w /etc/cairn/policies/web.toml`"
        );
        assert_eq!(
            problem_of(Path::new("/srv/pol"), 0o041777, 1000, true).unwrap(),
            "refusing to trust the policy directory that is owned by uid 1000, not root and is writable by group \
             and others (mode 1777): its commands would run as root. Fix: `chown root: /srv/pol && chmod go-w /srv/pol`"
        );
        assert!(problem_of(p, 0o100664, 0, false).unwrap().contains("writable by its group (mode 0664)"));
        assert!(problem_of(p, 0o100646, 0, false).unwrap().contains("writable by others (mode 0646)"));
    }
}
