//! What a root restore leaves out unless it is asked for.
//!
//! Any host that holds the repository password can write a snapshot, and
//! can write whatever it likes into it (its host name included), so a
//! root restore does not recreate what would hand out privileges: the
//! set-uid and set-gid bits of files, file capabilities (the
//! `security.capability` attribute), and device nodes. The file itself is
//! restored without them, a device node is skipped, and each is named;
//! `--restore-privileged` restores them all. The snapshot never decides.
//!
//! A directory keeps its set-gid bit: there it only makes new entries
//! inherit the directory's group, and gives no one any privilege. A
//! restore that does not run as root leaves nothing out: the files it
//! creates are its own, and it cannot create device nodes anyway.

use std::borrow::Cow;

use crate::repo::{Node, NodeKind};

/// The set-uid and set-gid bits.
const SET_ID: u32 = 0o6000;
/// The attribute that holds a file's capabilities.
const CAPABILITY: &[u8] = b"security.capability";

/// Why `node` would be restored only in part, or not at all, without
/// `--restore-privileged`; `None` when it has nothing privileged.
pub(super) fn withheld(node: &Node) -> Option<String> {
    let why = match node.kind {
        NodeKind::Chardev | NodeKind::Blockdev => "device node not restored",
        NodeKind::Dir | NodeKind::Symlink | NodeKind::Socket => return None,
        NodeKind::File | NodeKind::Fifo => {
            let set_id = match node.mode & SET_ID {
                0 => None,
                0o4000 => Some("set-uid bit"),
                0o2000 => Some("set-gid bit"),
                _ => Some("set-uid and set-gid bits"),
            };
            let caps = node.xattrs.iter().any(|x| x.name == CAPABILITY).then_some("file capabilities");
            let left: Vec<&str> = set_id.into_iter().chain(caps).collect();
            if left.is_empty() {
                return None;
            }
            return Some(format!(
                "restored without its {} (pass --restore-privileged to restore them)",
                left.join(" and ")
            ));
        }
    };
    Some(format!("{why} (pass --restore-privileged to restore it)"))
}

/// `node` without its set-id bits and file capabilities (a directory is
/// returned as it is).
pub(super) fn strip(node: &Node) -> Cow<'_, Node> {
    let caps = node.xattrs.iter().any(|x| x.name == CAPABILITY);
    if node.kind == NodeKind::Dir || (node.mode & SET_ID == 0 && !caps) {
        return Cow::Borrowed(node);
    }
    let mut n = node.clone();
    n.mode &= !SET_ID;
    n.xattrs.retain(|x| x.name != CAPABILITY);
    Cow::Owned(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::tree::Xattr;

    fn node(kind: NodeKind, mode: u32) -> Node {
        let mut n = Node::new(b"n".to_vec(), kind);
        n.mode = mode;
        n
    }

    #[test]
    fn set_id_bits_and_capabilities_of_files_are_left_out_and_named() {
        let plain = node(NodeKind::File, 0o755);
        assert_eq!(withheld(&plain), None);
        assert!(matches!(strip(&plain), Cow::Borrowed(_)));
        for (mode, named) in [(0o4755, "set-uid bit"), (0o2755, "set-gid bit"), (0o6755, "set-uid and set-gid bits")] {
            let n = node(NodeKind::File, mode);
            let why = withheld(&n).unwrap();
            assert!(why.contains(named) && why.contains("--restore-privileged"), "{why}");
            assert_eq!(strip(&n).mode, 0o755);
        }
        let mut cap = node(NodeKind::File, 0o755);
        cap.xattrs = vec![
            Xattr { name: CAPABILITY.to_vec(), value: vec![1, 2, 3] },
            Xattr { name: b"user.note".to_vec(), value: b"kept".to_vec() },
        ];
        assert!(withheld(&cap).unwrap().contains("file capabilities"));
        let stripped = strip(&cap);
        assert_eq!(stripped.xattrs.len(), 1);
        assert_eq!(stripped.xattrs[0].name, b"user.note");
    }

    #[test]
    fn devices_are_left_out_and_directories_keep_their_set_gid_bit() {
        for kind in [NodeKind::Chardev, NodeKind::Blockdev] {
            assert!(withheld(&node(kind, 0o666)).unwrap().starts_with("device node not restored"));
        }
        let shared = node(NodeKind::Dir, 0o2775);
        assert_eq!(withheld(&shared), None);
        assert_eq!(strip(&shared).mode, 0o2775);
        assert_eq!(withheld(&node(NodeKind::Fifo, 0o644)), None);
        assert_eq!(withheld(&node(NodeKind::Symlink, 0o777)), None);
    }
}
