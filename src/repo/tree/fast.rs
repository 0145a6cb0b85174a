//! A decoder for trees in the layout cairn writes, without serde. An
//! unchanged backup decodes the parent's tree of every directory it enters,
//! and the generic CBOR deserializer spent a fifth of such a backup's time
//! on it (field names matched as strings, every id read through a visitor).
//!
//! It reads the one layout [`Tree::encode`] writes: definite lengths, text
//! keys naming known fields once each, byte-string ids. On anything else it
//! gives up (`None`), and [`Tree::decode`] hands the bytes to the generic
//! decoder. So a tree never decodes differently from what the generic
//! decoder makes of the same bytes, and every error message still comes
//! from it; `tests/fuzz` compares the two on mutated trees. Lengths are
//! checked against the bytes left before anything is reserved.

use super::{Node, NodeKind, Tree, Xattr};
use crate::id::Id;

/// CBOR major types.
const UINT: u8 = 0;
const NINT: u8 = 1;
const BYTES: u8 = 2;
const TEXT: u8 = 3;
const ARRAY: u8 = 4;
const MAP: u8 = 5;
/// CBOR `null`.
const NULL: u8 = 0xf6;

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: u64) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(usize::try_from(n).ok()?)?;
        let s = self.b.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    /// A data item's head: its major type and argument. Indefinite
    /// lengths, floats and simple values other than `null` give up.
    fn head(&mut self) -> Option<(u8, u64)> {
        let first = *self.b.get(self.pos)?;
        self.pos += 1;
        let arg = match first & 0x1f {
            n @ 0..=23 => u64::from(n),
            24 => u64::from(self.take(1)?[0]),
            25 => u64::from(u16::from_be_bytes(self.take(2)?.try_into().ok()?)),
            26 => u64::from(u32::from_be_bytes(self.take(4)?.try_into().ok()?)),
            27 => u64::from_be_bytes(self.take(8)?.try_into().ok()?),
            _ => return None,
        };
        Some((first >> 5, arg))
    }

    /// The length of an item of major type `major`, at most the bytes left
    /// (each element takes at least one).
    fn len(&mut self, major: u8) -> Option<usize> {
        match self.head()? {
            (m, n) if m == major && n <= (self.b.len() - self.pos) as u64 => Some(n as usize),
            _ => None,
        }
    }

    /// Room for `n` items of at least `min_bytes` each, within the bytes
    /// left: a forged length reserves no more than its input could hold.
    fn capacity(&self, n: usize, min_bytes: usize) -> usize {
        n.min((self.b.len() - self.pos) / min_bytes)
    }

    fn uint(&mut self) -> Option<u64> {
        match self.head()? {
            (UINT, v) => Some(v),
            _ => None,
        }
    }

    fn u32(&mut self) -> Option<u32> {
        u32::try_from(self.uint()?).ok()
    }

    fn i64(&mut self) -> Option<i64> {
        match self.head()? {
            (UINT, v) => i64::try_from(v).ok(),
            (NINT, v) => Some(-1 - i64::try_from(v).ok()?),
            _ => None,
        }
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        match self.head()? {
            (BYTES, n) => self.take(n),
            _ => None,
        }
    }

    fn text(&mut self) -> Option<&'a str> {
        match self.head()? {
            (TEXT, n) => std::str::from_utf8(self.take(n)?).ok(),
            _ => None,
        }
    }

    fn id(&mut self) -> Option<Id> {
        Some(Id(self.bytes()?.try_into().ok()?))
    }

    /// `null` (an option's `None`), taken if it is next.
    fn null(&mut self) -> bool {
        let null = self.b.get(self.pos) == Some(&NULL);
        self.pos += usize::from(null);
        null
    }
}

/// A set of the fields seen, to give up on a field named twice.
struct Seen(u32);

impl Seen {
    fn first(&mut self, bit: u32) -> Option<()> {
        let fresh = self.0 & (1 << bit) == 0;
        self.0 |= 1 << bit;
        fresh.then_some(())
    }
}

/// The tree in `b`, when it is in the layout cairn writes and nothing
/// follows it; `None` otherwise.
pub fn tree(b: &[u8]) -> Option<Tree> {
    let mut r = Reader { b, pos: 0 };
    let (mut v, mut nodes) = (None, None);
    for _ in 0..r.len(MAP)? {
        match r.text()? {
            "v" if v.is_none() => v = Some(r.u32()?),
            "nodes" if nodes.is_none() => {
                let n = r.len(ARRAY)?;
                // A node takes at least its four required fields, and a
                // decoded one ten times as much: grow past the first few.
                let mut list = Vec::with_capacity(r.capacity(n, 24).min(4096));
                for _ in 0..n {
                    list.push(node(&mut r)?);
                }
                nodes = Some(list);
            }
            _ => return None,
        }
    }
    (r.pos == b.len()).then_some(Tree { v: v?, nodes: nodes? })
}

fn kind(name: &str) -> Option<NodeKind> {
    Some(match name {
        "file" => NodeKind::File,
        "dir" => NodeKind::Dir,
        "symlink" => NodeKind::Symlink,
        "fifo" => NodeKind::Fifo,
        "chardev" => NodeKind::Chardev,
        "blockdev" => NodeKind::Blockdev,
        "socket" => NodeKind::Socket,
        _ => return None,
    })
}

fn node(r: &mut Reader<'_>) -> Option<Node> {
    let mut n = Node::new(Vec::new(), NodeKind::File);
    let mut seen = Seen(0);
    for _ in 0..r.len(MAP)? {
        match r.text()? {
            "name" => {
                seen.first(0)?;
                n.name = r.bytes()?.to_vec();
            }
            "kind" => {
                seen.first(1)?;
                n.kind = kind(r.text()?)?;
            }
            "mode" => {
                seen.first(2)?;
                n.mode = r.u32()?;
            }
            "uid" => {
                seen.first(3)?;
                n.uid = r.u32()?;
            }
            "gid" => {
                seen.first(4)?;
                n.gid = r.u32()?;
            }
            "user" => {
                seen.first(5)?;
                n.user = if r.null() { None } else { Some(r.text()?.into()) };
            }
            "group" => {
                seen.first(6)?;
                n.group = if r.null() { None } else { Some(r.text()?.into()) };
            }
            "mtime" => {
                seen.first(7)?;
                n.mtime = r.i64()?;
            }
            "mtime_nsec" => {
                seen.first(8)?;
                n.mtime_nsec = r.u32()?;
            }
            "ctime" => {
                seen.first(9)?;
                n.ctime = r.i64()?;
            }
            "ctime_nsec" => {
                seen.first(10)?;
                n.ctime_nsec = r.u32()?;
            }
            "inode" => {
                seen.first(11)?;
                n.inode = r.uint()?;
            }
            "device" => {
                seen.first(12)?;
                n.device = r.uint()?;
            }
            "links" => {
                seen.first(13)?;
                n.links = r.uint()?;
            }
            "size" => {
                seen.first(14)?;
                n.size = r.uint()?;
            }
            "content" => {
                seen.first(15)?;
                let len = r.len(ARRAY)?;
                n.content.reserve_exact(r.capacity(len, 34));
                for _ in 0..len {
                    n.content.push(r.id()?);
                }
            }
            "subtree" => {
                seen.first(16)?;
                n.subtree = if r.null() { None } else { Some(r.id()?) };
            }
            "target" => {
                seen.first(17)?;
                n.target = if r.null() { None } else { Some(r.bytes()?.to_vec()) };
            }
            "rdev" => {
                seen.first(18)?;
                n.rdev = r.uint()?;
            }
            "xattrs" => {
                seen.first(19)?;
                let len = r.len(ARRAY)?;
                n.xattrs.reserve_exact(r.capacity(len, 14));
                for _ in 0..len {
                    n.xattrs.push(xattr(r)?);
                }
            }
            _ => return None,
        }
    }
    // The fields without a default: the generic decoder names the missing one.
    let required = 1 << 0 | 1 << 1 | 1 << 2 | 1 << 7;
    (seen.0 & required == required).then_some(n)
}

fn xattr(r: &mut Reader<'_>) -> Option<Xattr> {
    let (mut name, mut value) = (None, None);
    for _ in 0..r.len(MAP)? {
        match r.text()? {
            "name" if name.is_none() => name = Some(r.bytes()?.to_vec()),
            "value" if value.is_none() => value = Some(r.bytes()?.to_vec()),
            _ => return None,
        }
    }
    Some(Xattr { name: name?, value: value? })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node of every kind in turn, with its optional fields set or not
    /// as the bits of `i` say.
    fn node_number(i: u32) -> Node {
        let kinds = [
            NodeKind::File,
            NodeKind::Dir,
            NodeKind::Symlink,
            NodeKind::Fifo,
            NodeKind::Chardev,
            NodeKind::Blockdev,
            NodeKind::Socket,
        ];
        let bit = |b: u32| i & (1 << b) != 0;
        let mut n = Node::new(format!("n{i:05}\u{e9}").into_bytes(), kinds[i as usize % kinds.len()]);
        n.mode = i * 7 % 0o7777;
        n.mtime = if bit(0) { -(i as i64) * 1_000_003 } else { i as i64 * 86_400 };
        n.mtime_nsec = if bit(1) { 999_999_999 } else { 0 };
        n.ctime = if bit(2) { i64::MIN + i as i64 } else { i64::MAX - i as i64 };
        n.ctime_nsec = i;
        n.uid = if bit(3) { u32::MAX } else { 0 };
        n.gid = if bit(4) { 1000 } else { 0 };
        n.user = bit(5).then(|| "root".into());
        n.group = bit(6).then(|| "wheel \u{1f600}".into());
        n.inode = if bit(7) { u64::MAX } else { u64::from(i) };
        n.device = if bit(8) { 0x0803 } else { 0 };
        n.links = u64::from(i % 3);
        n.size = if bit(9) { 1 << 40 } else { u64::from(i) * 255 };
        if bit(10) {
            n.content = (0..i % 5).map(|c| Id::hash_of(&[i as u8, c as u8])).collect();
        }
        n.subtree = bit(11).then(|| Id::hash_of(&i.to_le_bytes()));
        n.target = bit(12).then(|| b"../\xff\x00target".to_vec());
        n.rdev = if bit(13) { 0x0101 } else { 0 };
        if bit(14) {
            n.xattrs = vec![
                Xattr { name: b"user.a".to_vec(), value: Vec::new() },
                Xattr { name: b"security.capability".to_vec(), value: vec![0xff; 300] },
            ];
        }
        n
    }

    #[test]
    fn every_tree_cairn_writes_decodes_here_as_the_generic_decoder_reads_it() {
        for (start, len) in [(0u32, 0u32), (0, 1), (1, 40), (1 << 14, 300), (40_000, 24)] {
            let t = Tree::new((start..start + len).map(node_number).collect());
            let bytes = t.encode();
            let fast = tree(&bytes).unwrap_or_else(|| panic!("the tree of nodes {start}.. took the generic decoder"));
            assert_eq!(fast, t);
            assert_eq!(Tree::decode_generic(&bytes).unwrap(), fast);
        }
    }

    /// CBOR of a map with `fields` (text keys), as the generic encoder
    /// writes each value.
    fn map(fields: &[(&str, ciborium::Value)]) -> ciborium::Value {
        ciborium::Value::Map(fields.iter().map(|(k, v)| (ciborium::Value::Text(k.to_string()), v.clone())).collect())
    }

    fn encoded(v: &ciborium::Value) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(v, &mut out).unwrap();
        out
    }

    #[test]
    fn a_tree_in_another_layout_is_left_to_the_generic_decoder_which_reads_it_the_same() {
        use ciborium::Value as V;
        let name = ("name", V::Bytes(b"f".to_vec()));
        let kind = ("kind", V::Text("file".into()));
        let mode = ("mode", V::Integer(0o644.into()));
        let mtime = ("mtime", V::Integer((-5).into()));
        let tree_of = |node: V| map(&[("v", V::Integer(1.into())), ("nodes", V::Array(vec![node]))]);
        let plain = tree_of(map(&[name.clone(), kind.clone(), mode.clone(), mtime.clone()]));
        let mut trailing = encoded(&plain);
        trailing.push(0);
        let mut indefinite = encoded(&plain);
        // The nodes' array, made indefinite (0x9f … 0xff).
        let at = indefinite.iter().position(|&b| b == 0x81).unwrap();
        indefinite[at] = 0x9f;
        indefinite.push(0xff);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "an unknown field",
                encoded(&tree_of(map(&[
                    name.clone(),
                    kind.clone(),
                    mode.clone(),
                    mtime.clone(),
                    ("new", V::Bool(true)),
                ]))),
            ),
            (
                "a field named twice",
                encoded(&tree_of(map(&[
                    name.clone(),
                    kind.clone(),
                    mode.clone(),
                    mtime.clone(),
                    ("mode", V::Integer(1.into())),
                ]))),
            ),
            ("a missing field", encoded(&tree_of(map(&[name.clone(), kind.clone(), mtime.clone()])))),
            (
                "a name as text",
                encoded(&tree_of(map(&[("name", V::Text("f".into())), kind, mode.clone(), mtime.clone()]))),
            ),
            (
                "an id of 31 bytes",
                encoded(&tree_of(map(&[
                    name.clone(),
                    ("kind", V::Text("dir".into())),
                    mode,
                    mtime,
                    ("subtree", V::Bytes(vec![1; 31])),
                ]))),
            ),
            ("trailing bytes", trailing),
            ("an indefinite length", indefinite),
            ("a version of 2", encoded(&map(&[("v", V::Integer(2.into())), ("nodes", V::Array(Vec::new()))]))),
            ("nothing", Vec::new()),
        ];
        for (what, bytes) in cases {
            let expected = Tree::decode_generic(&bytes);
            if what != "a version of 2" {
                assert!(tree(&bytes).is_none(), "{what}: read here, not by the generic decoder");
            }
            assert_eq!(Tree::decode(&bytes), expected, "{what}");
        }
        assert!(Tree::decode(&encoded(&plain)).is_ok() && tree(&encoded(&plain)).is_some());
    }

    #[test]
    fn a_forged_length_reserves_no_more_than_its_bytes_could_hold() {
        // A tree claiming 2^32 nodes in a few bytes: refused, nothing reserved.
        let forged = [0xa2, 0x61, b'v', 0x01, 0x65, b'n', b'o', b'd', b'e', b's', 0x9a, 0xff, 0xff, 0xff, 0xff];
        assert!(tree(&forged).is_none());
        let r = Reader { b: &[0; 100], pos: 0 };
        assert_eq!(r.capacity(1 << 40, 34), 2);
    }
}
