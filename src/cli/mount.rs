//! `cairn mount MOUNTPOINT`: browse the snapshots as files, until
//! SIGINT, SIGTERM or an unmount from outside.

use std::path::{Path, PathBuf};

use nix::sys::signal::{SigSet, Signal};

use crate::error::{Error, Result};
use crate::mount::{self, Options};

use super::output::Printer;
use super::{open_repo, threads, GlobalArgs, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct MountArgs {
    /// An empty directory to mount the snapshots on
    pub mountpoint: PathBuf,
    /// Memory for decrypted file contents and directory trees, in MiB
    #[arg(long, default_value_t = 256, value_name = "MIB", value_parser = clap::value_parser!(u64).range(16..=65536))]
    pub cache_mib: u64,
}

pub fn run(g: &GlobalArgs, a: &MountArgs, p: &Printer) -> Result<i32> {
    // Before any thread starts (the S3 client's included), so that every
    // thread inherits the mask and only the waiter below takes them.
    let mut stop = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        stop.add(s);
    }
    stop.thread_block().map_err(|e| Error::io("signal mask", e.into()))?;
    let repo = open_repo(g)?;
    let location = repo.backend().location();
    let opts = Options { cache_bytes: (a.cache_mib as usize) << 20, threads: threads(g) };
    let mounted = mount::mount(repo, &a.mountpoint, opts)?;
    let at = mounted.mountpoint().to_path_buf();
    p.info(format!(
        "mounted {location} at {}: ids/, hosts/ and latest. Ctrl-C, SIGTERM or `fusermount3 -u {}` unmounts.",
        at.display(),
        at.display()
    ));
    let quiet = p.quiet;
    std::thread::spawn(move || unmount_on_signals(stop, &at, &Printer::new(false, quiet)));
    mounted.run()?;
    p.info(format!("unmounted {}", a.mountpoint.display()));
    Ok(EXIT_OK)
}

/// Unmounts at SIGINT, SIGTERM or SIGHUP. A busy mount stays, with a
/// warning; the next signal detaches it lazily.
fn unmount_on_signals(stop: SigSet, at: &Path, p: &Printer) {
    let mut lazy = false;
    while let Ok(sig) = stop.wait() {
        p.info(format!("{sig}: unmounting {}", at.display()));
        match mount::unmount(at, lazy) {
            Ok(()) => return,
            Err(e) => {
                p.warn(format!(
                    "{e}; close what is open in it, or signal again (Ctrl-C) to detach it now: \
                     it then goes when the last open file is closed"
                ));
                lazy = true;
            }
        }
    }
}
