//! Tests of the scan's reuse decisions.
use super::*;

#[test]
fn the_parents_xattrs_hold_only_for_the_same_inode_in_the_same_state() {
    let mut old = Node::new(b"f".to_vec(), NodeKind::File);
    (old.size, old.mtime, old.mtime_nsec, old.ctime, old.ctime_nsec, old.inode) = (5, 10, 11, 20, 21, 7);
    assert!(same_inode_state(&old, &old.clone()));
    let changes: [fn(&mut Node); 7] = [
        |n| n.ctime_nsec += 1, // setxattr, an ACL, chmod, chown
        |n| n.ctime += 1,
        |n| n.mtime_nsec += 1,
        |n| n.mtime += 1,
        |n| n.size += 1,
        |n| n.inode += 1, // replaced by another file
        |n| n.kind = NodeKind::Dir,
    ];
    for (i, change) in changes.iter().enumerate() {
        let mut new = old.clone();
        change(&mut new);
        assert!(!same_inode_state(&old, &new), "change {i} not seen");
    }
}
