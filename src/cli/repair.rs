//! `cairn repair undelete --as-of TIME` (the work is in
//! [`crate::repo::undelete`]).

use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::repo::undelete;

use super::output::{human_bytes, Printer};
use super::{open_backend, open_repo, GlobalArgs, EXIT_INTEGRITY, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct RepairArgs {
    #[command(subcommand)]
    pub cmd: RepairCmd,
}

#[derive(clap::Subcommand, Debug)]
pub enum RepairCmd {
    /// Write back, as new objects, every object the repository held at TIME and no longer holds
    /// (a versioned S3 bucket; needs the maintenance host's credential to read old versions)
    Undelete {
        /// The time to restore from (RFC 3339, or YYYY-MM-DD[ HH:MM[:SS]] in UTC)
        #[arg(long, value_name = "TIME", value_parser = super::parse_time)]
        as_of: DateTime<Utc>,
        /// Show what would be written back, write nothing
        #[arg(long, short = 'n')]
        dry_run: bool,
        /// Also write back key slots removed since TIME (by default a removed
        /// slot stays removed, unless the repository has none left)
        #[arg(long)]
        include_key_slots: bool,
    },
}

pub fn run(g: &GlobalArgs, a: &RepairArgs, p: &Printer) -> Result<i32> {
    let RepairCmd::Undelete { as_of, dry_run, include_key_slots } = &a.cmd;
    let past = open_repo(&GlobalArgs { as_of: Some(*as_of), ..g.clone() })?;
    let now = open_backend(&GlobalArgs { as_of: None, ..g.clone() })?;
    let reader = crate::evidence::key::read_key(&past);
    let opts =
        undelete::UndeleteOptions { dry_run: *dry_run, key_slots: *include_key_slots, evidence_openers: vec![&reader] };
    let r = undelete::undelete(&past, now.as_ref(), &opts)?;
    if p.json {
        p.json(&r);
    } else {
        for k in &r.restored {
            p.data(k);
        }
        for (k, why) in &r.refused {
            p.warn(format!("not written back: {k}: {why}"));
        }
        let verb = if r.dry_run { "would write back" } else { "wrote back" };
        p.info(format!(
            "{verb} {} object(s) ({}) of the {} held at {}",
            r.restored.len(),
            human_bytes(r.bytes),
            r.then,
            as_of.format("%Y-%m-%d %H:%M:%S UTC")
        ));
    }
    Ok(if r.refused.is_empty() { EXIT_OK } else { EXIT_INTEGRITY })
}
