//! Verification of restored files: re-read each one, hard links included,
//! and check every chunk against its keyed id, and the size against the plan. Files are opened
//! through the target's directory handles, as the restore wrote them.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;

use crate::id::Id;
use crate::repo::Repository;

use super::handles::Handles;
use super::plan::{ChunkRef, LinkTo, Plan, PlannedFile, PlannedLink};
use super::Failure;

/// Where a file's content departs from its chunks.
pub enum ChunkFault {
    /// Reading at this offset failed.
    Read(u64, std::io::Error),
    /// The content at this offset is not this chunk.
    Differs(u64, Id),
}

/// Re-reads each chunk from `file` and checks it against its keyed id.
pub fn chunks_match(repo: &Repository, file: &File, chunks: &[ChunkRef], buf: &mut Vec<u8>) -> Result<(), ChunkFault> {
    for c in chunks {
        buf.resize(c.length as usize, 0);
        file.read_exact_at(buf, c.offset).map_err(|e| ChunkFault::Read(c.offset, e))?;
        if repo.key().blob_id(buf) != c.id {
            return Err(ChunkFault::Differs(c.offset, c.id));
        }
    }
    Ok(())
}

/// Checks one restored file, opened through its directory's handle
/// without following a symlink; returns why it is wrong, if it is.
fn check_file(repo: &Repository, dirs: &Handles<'_>, f: &PlannedFile, buf: &mut Vec<u8>) -> Option<String> {
    check_at(repo, dirs, &f.rel, f, buf)
}

/// Checks the file at `rel` against the planned content of `f`.
fn check_at(repo: &Repository, dirs: &Handles<'_>, rel: &Path, f: &PlannedFile, buf: &mut Vec<u8>) -> Option<String> {
    let file = match dirs.open_file(rel) {
        Ok(file) => file,
        Err(e) => return Some(format!("cannot open for verification: {e}")),
    };
    match file.metadata() {
        Ok(m) if m.len() != f.size => return Some(format!("size {} differs from {}", m.len(), f.size)),
        Err(e) => return Some(e.to_string()),
        _ => {}
    }
    match chunks_match(repo, &file, &f.chunks, buf) {
        Ok(()) => None,
        Err(ChunkFault::Read(offset, e)) => Some(format!("read at {offset}: {e}")),
        Err(ChunkFault::Differs(offset, id)) => {
            Some(format!("content at offset {offset} does not match chunk {}", id.short()))
        }
    }
}

/// Checks a restored hard link: its content against the content planned
/// for it (not only that it is a link), then that it is the inode of the
/// file it links to: the one an earlier batch restored, when the link is
/// to such a file, else the one now at that file's name.
fn check_link(
    repo: &Repository,
    dirs: &Handles<'_>,
    plan: &Plan,
    link: &PlannedLink,
    buf: &mut Vec<u8>,
) -> Option<String> {
    let (rel, first) = (&link.rel, plan.link_first(link));
    if let Some(why) = check_at(repo, dirs, rel, plan.link_content(link), buf) {
        return Some(why);
    }
    use std::os::unix::fs::MetadataExt;
    let expected = match &link.to {
        LinkTo::Earlier { ident: Some(ident), .. } => Ok(*ident),
        _ => dirs.lstat(first).map(|b| (b.dev(), b.ino())),
    };
    match (dirs.lstat(rel), expected) {
        (Ok(a), Ok(b)) if (a.dev(), a.ino()) == b => None,
        (Ok(_), Ok(_)) => Some(format!("content matches, but it is not a hard link to /{}", first.display())),
        (Err(e), _) | (_, Err(e)) => Some(e.to_string()),
    }
}

/// Verifies every planned file and hard link under `target`, in parallel
/// (a hard link's file may be one an earlier batch restored).
pub fn verify(repo: &Repository, plan: &Plan, target: &Path, threads: usize) -> Vec<Failure> {
    let root = match Handles::open_root(target) {
        Ok(root) => root,
        Err(e) => {
            let reason = format!("cannot open the target {} for verification: {e}", target.display());
            return plan
                .files
                .iter()
                .map(|f| &f.rel)
                .chain(plan.hardlinks.iter().map(|l| &l.rel))
                .map(|rel| Failure { path: rel.display().to_string(), reason: reason.clone() })
                .collect();
        }
    };
    let dirs = Handles::new(root, plan.dirs.iter().map(|d| d.rel.as_path()));
    let failures = Mutex::new(Vec::new());
    let files = plan.files.len();
    super::parallel_with(threads, files + plan.hardlinks.len(), Vec::new, |buf, i| {
        let (rel, why) = if i < files {
            let f = &plan.files[i];
            (&f.rel, check_file(repo, &dirs, f, buf))
        } else {
            let link = &plan.hardlinks[i - files];
            (&link.rel, check_link(repo, &dirs, plan, link, buf))
        };
        if let Some(reason) = why {
            failures.lock().unwrap().push(Failure { path: rel.display().to_string(), reason });
        }
    });
    failures.into_inner().unwrap()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::repo::{Node, NodeKind};

    #[test]
    fn a_hard_link_is_verified_by_its_content_then_by_its_inode() {
        let (dir, repo) = crate::repo::walk::tests::repo();
        let chunk = ChunkRef { id: repo.key().blob_id(b"xyz"), offset: 0, length: 3 };
        let file = PlannedFile {
            rel: PathBuf::from("a"),
            node: Node::new(b"a".to_vec(), NodeKind::File),
            chunks: vec![chunk],
            size: 3,
        };
        let link = PlannedLink { rel: PathBuf::from("b"), to: LinkTo::File(0) };
        let plan = Plan { files: vec![file], hardlinks: vec![link], ..Default::default() };
        let target = dir.path().join("t");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("a"), b"xyz").unwrap();
        let reasons = |plan: &Plan| -> Vec<String> {
            verify(&repo, plan, &target, 2).into_iter().map(|f| format!("{}: {}", f.path, f.reason)).collect()
        };
        // Another content of the same size behind the link's name.
        std::fs::write(target.join("b"), b"abc").unwrap();
        assert_eq!(reasons(&plan), ["b: content at offset 0 does not match chunk ".to_string() + &chunk.id.short()]);
        // The same content, but a copy rather than a link.
        std::fs::write(target.join("b"), b"xyz").unwrap();
        assert_eq!(reasons(&plan), ["b: content matches, but it is not a hard link to /a"]);
        std::fs::remove_file(target.join("b")).unwrap();
        std::fs::hard_link(target.join("a"), target.join("b")).unwrap();
        assert!(reasons(&plan).is_empty());
    }
}
