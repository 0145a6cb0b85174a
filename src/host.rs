//! Facts about the machine cairn runs on: its host name, the user, and
//! whether a local process still exists. Recorded in snapshots, locks,
//! evidence and reports; read by lock staleness and the state's run
//! bookkeeping.

/// This machine's host name (`unknown` when it cannot be read).
pub fn hostname() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "unknown".into())
}

/// The name of the user cairn runs as (the uid when it has no name).
pub fn username() -> String {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid).ok().flatten().map(|u| u.name).unwrap_or_else(|| uid.to_string())
}

/// This host's clock, which locks record and which judges them where the
/// storage has no clock of its own. In a `failpoints` build (tests only),
/// `CAIRN_TEST_CLOCK_OFFSET_SECS` shifts it, so that a test can run one
/// process with a clock that is wrong by a known amount.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    let now = chrono::Utc::now();
    #[cfg(feature = "failpoints")]
    if let Some(secs) = std::env::var(CLOCK_OFFSET_ENV).ok().and_then(|s| s.parse::<i64>().ok()) {
        return now + chrono::Duration::seconds(secs);
    }
    now
}

/// The variable a `failpoints` build shifts [`now`] by, in seconds.
pub const CLOCK_OFFSET_ENV: &str = "CAIRN_TEST_CLOCK_OFFSET_SECS";

/// Whether a process exists on this host (one of another user counts).
pub fn process_alive(pid: u32) -> bool {
    // kill(pid, 0): ESRCH means gone; EPERM means it exists (another user).
    // Pid 0 and pids above i32::MAX would name process groups: not a holder.
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None) {
        Ok(()) => true,
        Err(e) => e != nix::errno::Errno::ESRCH,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_is_alive_and_a_reaped_child_is_not() {
        assert!(super::process_alive(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!super::process_alive(pid), "pid {pid} of a reaped child still counts as alive");
    }
}
