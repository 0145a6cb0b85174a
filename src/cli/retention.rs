//! `cairn retention extend`: the S3 Object Lock retention step (the work
//! is in [`crate::repo::object_lock`]).

use chrono::Utc;

use crate::error::{Error, Result};
use crate::repo::object_lock::{self, ExtendOptions};

use super::output::Printer;
use super::{open_repo, GlobalArgs, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct RetentionArgs {
    #[command(subcommand)]
    pub cmd: RetentionCmd,
}

#[derive(clap::Subcommand, Debug)]
pub enum RetentionCmd {
    /// Extend the lock of every object whose retention ends within the window and half the
    /// margin (needs the maintenance host's credential)
    Extend {
        /// Count what is due, change nothing
        #[arg(long, short = 'n')]
        dry_run: bool,
        /// Run the pass as if it were TIME (a time to come; for tests and benchmarks)
        #[arg(long, hide = true, value_parser = super::parse_time)]
        at: Option<chrono::DateTime<Utc>>,
    },
}

pub fn run(g: &GlobalArgs, a: &RetentionArgs, p: &Printer) -> Result<i32> {
    let RetentionCmd::Extend { dry_run, at } = &a.cmd;
    let now = Utc::now();
    let at = match at {
        // Only ever later: an earlier time would give earlier dates.
        Some(t) if *t < now => {
            return Err(Error::BadFlag {
                flag: "--at".into(),
                value: t.to_rfc3339(),
                expected: "must not be in the past".into(),
            })
        }
        Some(t) => *t,
        None => now,
    };
    let repo = open_repo(g)?;
    let started = std::time::Instant::now();
    let r = object_lock::extend(&repo, at, ExtendOptions { dry_run: *dry_run })?;
    if p.json {
        p.json(&serde_json::json!({ "report": r, "seconds": started.elapsed().as_secs_f64() }));
    } else {
        let verb = if r.dry_run { "would extend" } else { "extended" };
        p.info(format!(
            "{verb} the lock of {} of {} object(s) to {}; {} request(s), {:.1} s",
            r.extended,
            r.objects,
            r.until.format("%Y-%m-%d %H:%M:%S UTC"),
            r.requests,
            started.elapsed().as_secs_f64()
        ));
        if let Some(t) = r.earliest_left {
            p.info(format!("every other object stays locked until {} or later", t.format("%Y-%m-%d %H:%M UTC")));
        }
    }
    Ok(EXIT_OK)
}
