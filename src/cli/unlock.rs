//! `cairn unlock [--remove-all]`: remove the locks that no longer count.

use crate::error::{Error, Result};
use crate::repo::litter;

use super::output::Printer;
use super::{open_repo, GlobalArgs, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct UnlockArgs {
    /// Also remove live locks of other hosts (never one of a process running here)
    #[arg(long)]
    pub remove_all: bool,
}

pub fn run(g: &GlobalArgs, a: &UnlockArgs, p: &Printer) -> Result<i32> {
    let repo = open_repo(g)?;
    let out = litter::unlock(&repo, a.remove_all)?;
    if p.json {
        p.json(&out);
    } else {
        for l in &out.locks.removed {
            let holder = l.holder.as_deref().map(|h| format!(" of {h}")).unwrap_or_default();
            p.data(format!("removed {}{holder}: {}", l.object, l.reason));
        }
        for t in &out.temporaries {
            p.data(format!("removed {t}"));
        }
        for k in &out.locks.kept {
            p.info(format!("kept live lock {} of {}", k.object, k.holder));
        }
        p.info(format!("removed {} lock(s) and {} temporary file(s)", out.locks.removed.len(), out.temporaries.len()));
    }
    for f in &out.failed {
        p.warn(format!("could not remove: {f}"));
    }
    if out.locks.removed.iter().any(|l| l.suspicious) {
        p.warn("some removed locks were suspicious (from the future, or not sealed with this repository's key)");
    }
    if a.remove_all {
        if let Some(k) = out.locks.kept.iter().find(|k| k.running_here) {
            return Err(Error::Locked {
                holder: k.holder.clone(),
                remedy: "its process is running on this host: `cairn unlock` never removes such a lock; wait for \
                         it to finish, or stop it first"
                    .into(),
            });
        }
    }
    Ok(EXIT_OK)
}
