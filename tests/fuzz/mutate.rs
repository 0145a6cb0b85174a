//! Seeded mutations of fuzz inputs: bit flips, interesting bytes and
//! integers (length fields), truncation, deletion, duplication, splices
//! from other inputs, and runs of one slice repeated (deep nesting).

#[path = "../common/rng.rs"]
#[allow(dead_code, reason = "the fuzz harness does not pick from slices")]
mod rng;
pub use rng::Rng;

/// A stable hash of a target's name, to give each target its own stream.
pub fn hash_name(name: &str) -> u64 {
    u64::from_le_bytes(blake3::hash(name.as_bytes()).as_bytes()[..8].try_into().unwrap())
}

/// The largest input a mutation makes.
pub const MAX_INPUT: usize = 1 << 20;

const INTERESTING_BYTES: [u8; 9] = [0, 1, 0x7f, 0x80, 0xff, b'"', b'{', b'[', b'9'];

fn interesting_int(rng: &mut Rng, len: usize) -> u64 {
    let choices = [
        0,
        1,
        len as u64,
        len as u64 + 1,
        0x7f,
        0xff,
        0xffff,
        0x7fff_ffff,
        0x8000_0000,
        0xffff_ffff,
        1 << 32,
        1 << 40,
        u64::MAX,
        u64::MAX / 2,
        rng.next(),
    ];
    choices[rng.below(choices.len())]
}

/// One to four mutations of `input`; `corpus` gives material for splices.
pub fn mutate(rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        mutate_once(rng, &mut v, corpus);
    }
    // Inputs stay within what the largest honest objects hold.
    v.truncate(MAX_INPUT);
    v
}

fn range(rng: &mut Rng, len: usize) -> (usize, usize) {
    if len == 0 {
        return (0, 0);
    }
    let a = rng.below(len);
    let b = a + rng.below((len - a).min(64) + 1);
    (a, b)
}

fn mutate_once(rng: &mut Rng, v: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    let len = v.len();
    match rng.below(11) {
        // Flip one bit.
        0 if len > 0 => {
            let i = rng.below(len);
            v[i] ^= 1 << rng.below(8);
        }
        // An interesting byte.
        1 if len > 0 => {
            let i = rng.below(len);
            v[i] = INTERESTING_BYTES[rng.below(INTERESTING_BYTES.len())];
        }
        // Truncate.
        2 if len > 0 => v.truncate(rng.below(len)),
        // Delete a range.
        3 => {
            let (a, b) = range(rng, len);
            v.drain(a..b);
        }
        // Duplicate a range in place.
        4 => {
            let (a, b) = range(rng, len);
            let copy = v[a..b].to_vec();
            let at = rng.below(len + 1);
            v.splice(at..at, copy);
        }
        // Splice in a range of another input, or overwrite with it.
        5 => {
            let other = &corpus[rng.below(corpus.len())];
            let (a, b) = range(rng, other.len());
            let at = rng.below(len + 1);
            if rng.below(2) == 0 {
                v.splice(at..at, other[a..b].iter().copied());
            } else {
                let end = (at + b - a).min(len);
                v.splice(at..end, other[a..b].iter().copied());
            }
        }
        // A length field: an interesting integer, 1 to 8 bytes, either endianness.
        6 if len > 0 => {
            let n = interesting_int(rng, len);
            let width = [1, 2, 4, 8][rng.below(4)];
            let bytes = if rng.below(2) == 0 { n.to_le_bytes() } else { n.to_be_bytes() };
            let bytes = if rng.below(2) == 0 { &bytes[..width] } else { &bytes[8 - width..] };
            let at = rng.below(len);
            for (i, b) in bytes.iter().enumerate() {
                if at + i < v.len() {
                    v[at + i] = *b;
                }
            }
        }
        // A run of digits becomes an extreme number (text formats).
        7 => {
            if let Some(start) = (0..len).map(|_| rng.below(len)).find(|&i| v[i].is_ascii_digit()) {
                let end = (start..len).find(|&i| !v[i].is_ascii_digit()).unwrap_or(len);
                let extremes: [&[u8]; 5] = [b"99999999999999999999999", b"-1", b"18446744073709551616", b"0", b"1e400"];
                v.splice(start..end, extremes[rng.below(extremes.len())].iter().copied());
            }
        }
        // Random bytes inserted.
        8 => {
            let at = rng.below(len + 1);
            let n = 1 + rng.below(16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            v.splice(at..at, bytes);
        }
        // One short slice repeated many times: nesting deep enough to
        // overflow a recursive parser's stack.
        9 if len > 0 => {
            let a = rng.below(len);
            let b = (a + 1 + rng.below(4)).min(len);
            let times = [16, 256, 4096, 65536][rng.below(4)];
            let run: Vec<u8> = v[a..b].repeat(times);
            v.splice(a..a, run);
        }
        // Swap two ranges' contents of the same length.
        _ if len > 1 => {
            let (a, b) = (rng.below(len), rng.below(len));
            let n = rng.below((len - a.max(b)).min(32) + 1);
            for i in 0..n {
                v.swap(a + i, b + i);
            }
        }
        _ => v.push(rng.next() as u8),
    }
}
