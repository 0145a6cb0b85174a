//! The keys an auditor trusts: the trust root of verification.
//!
//! The repository's own list of enrolled keys is never the trust root
//! (anyone with the password can enroll a key). An auditor pins the keys
//! that count in a **keys file**, one key per line:
//!
//! ```text
//! # host        public key                                      options
//! db1           cairn-evidence-ed25519:3q2+7w…=
//! web-07        cairn-evidence-ed25519:Zm9v…=                   revoked-after=2026-03-15T00:00:00Z
//! web-08        cairn-evidence-ed25519:YmFy…=                   revoked-after=41
//! @legacy       cairn-evidence-ed25519:cXV4…=                   revoked-after=0
//! @reader       cairn-evidence-reader:…=
//! ```
//!
//! - `HOST KEY`: a host key, and the host it belongs to. A record signed by
//!   a key that is not listed does not count, and is reported.
//! - `revoked-after=TIME` (RFC 3339): records of that key appended after
//!   TIME (by their own `time`) are reported as revoked. `revoked-after=SEQ`:
//!   those after record SEQ of the key's sub-chain, which a key holder
//!   cannot backdate.
//! - `@legacy KEY`: the repository's sealed key (`cairn evidence pubkey`),
//!   which every password holder can use; its records are the legacy chain.
//!   Each repository has its own: a fleet over several lists one line for
//!   each, and a repository's legacy chain is verified under the one its
//!   first verifying record was signed with ([`Trust::for_legacy_chain`]).
//! - `@reader KEY`: a read key (`cairn evidence reader-key`), to read a
//!   repository's evidence without the password. Several may be given; each
//!   is tried.
//!
//! `#` starts a comment; blank lines are ignored. `cairn evidence keys`
//! prints the lines for the keys a repository enrolled, for the auditor to
//! check against each host (`cairn evidence enroll` prints its own line).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use ed25519_dalek::VerifyingKey;
use serde::Serialize;

use super::key::{key_id, parse_public, parse_reader, LEGACY_KEY_ID};
use crate::crypto::MasterKey;
use crate::error::{Error, Result};

/// From when a key's records no longer count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RevokedAfter {
    /// Records whose `time` is after this.
    Time(DateTime<Utc>),
    /// Records after this seq of the key's sub-chain.
    Seq(u64),
}

impl std::fmt::Display for RevokedAfter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RevokedAfter::Time(t) => write!(f, "{}", t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            RevokedAfter::Seq(s) => write!(f, "record {s}"),
        }
    }
}

/// A key whose records count.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    pub key_id: String,
    pub public: VerifyingKey,
    /// The host it belongs to; `None` when not known (a key given alone).
    pub host: Option<String>,
    pub revoked_after: Option<RevokedAfter>,
}

/// The keys that count, by chain (`legacy` or a key id).
#[derive(Debug, Clone, Default)]
pub struct Trust {
    pub keys: BTreeMap<String, TrustedKey>,
    /// True for an auditor's pinned keys; false when the keys come from the
    /// repository itself (`cairn check`, with the password).
    pub pinned: bool,
    /// The other `@legacy` keys after the first (which is `keys["legacy"]`):
    /// other repositories' sealed keys.
    pub other_legacy: Vec<TrustedKey>,
}

impl Trust {
    /// One key, given alone (`--pubkey`): it counts as the legacy key and
    /// as the host key with its id.
    pub fn single(public: VerifyingKey) -> Trust {
        let mut keys = BTreeMap::new();
        for id in [LEGACY_KEY_ID.to_string(), key_id(&public)] {
            keys.insert(id.clone(), TrustedKey { key_id: id, public, host: None, revoked_after: None });
        }
        Trust { keys, pinned: true, other_legacy: Vec::new() }
    }

    pub fn get(&self, chain: &str) -> Option<&TrustedKey> {
        self.keys.get(chain)
    }

    /// This trust for one repository's records `legacy_records` (the
    /// legacy chain's, as `(seq, bytes)`): with several `@legacy` keys, the
    /// one that signed the lowest record that verifies under any of them
    /// becomes the legacy key (one repository has one sealed key); with
    /// one, or when none verifies, the trust as it is.
    pub fn for_legacy_chain<'a>(&self, legacy_records: impl IntoIterator<Item = (u64, &'a [u8])>) -> Cow<'_, Trust> {
        let Some(first) = self.keys.get(LEGACY_KEY_ID).filter(|_| !self.other_legacy.is_empty()) else {
            return Cow::Borrowed(self);
        };
        let mut records: Vec<(u64, &[u8])> = legacy_records.into_iter().collect();
        records.sort_by_key(|(seq, _)| *seq);
        let candidates: Vec<&TrustedKey> = std::iter::once(first).chain(&self.other_legacy).collect();
        let signer = records
            .iter()
            .find_map(|(_, bytes)| candidates.iter().find(|k| super::record::check_signed(bytes, &k.public).is_ok()));
        match signer {
            Some(k) if k.public != first.public => {
                let mut t = self.clone();
                t.keys.insert(LEGACY_KEY_ID.into(), (*k).clone());
                Cow::Owned(t)
            }
            _ => Cow::Borrowed(self),
        }
    }
}

/// A parsed keys file: the trust, and the read keys it holds.
pub struct KeysFile {
    pub trust: Trust,
    pub readers: Vec<MasterKey>,
}

/// Reads a keys file (see the module doc).
pub fn read_keys_file(path: &Path) -> Result<KeysFile> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_keys(&text, &path.display().to_string())
}

/// Parses the text of a keys file; `shown` names it in errors.
pub fn parse_keys(text: &str, shown: &str) -> Result<KeysFile> {
    let mut trust = Trust { keys: BTreeMap::new(), pinned: true, other_legacy: Vec::new() };
    let mut readers = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let bad = |detail: String| Error::BadKeysFile { file: shown.to_string(), line: i + 1, detail };
        let mut words = line.split_whitespace();
        let (Some(host), Some(key)) = (words.next(), words.next()) else {
            return Err(bad("expected `HOST KEY [revoked-after=TIME|SEQ]`".into()));
        };
        if host == "@reader" {
            readers.push(parse_reader(key).map_err(|e| bad(e.to_string()))?);
            if let Some(w) = words.next() {
                return Err(bad(format!("`{w}`: a reader key takes no option")));
            }
            continue;
        }
        let public = parse_public(key).map_err(|e| bad(e.to_string()))?;
        let mut revoked_after = None;
        for w in words {
            let Some(v) = w.strip_prefix("revoked-after=") else {
                return Err(bad(format!("unknown option `{w}` (the only one is revoked-after=TIME|SEQ)")));
            };
            revoked_after = Some(match v.parse::<u64>() {
                Ok(seq) => RevokedAfter::Seq(seq),
                Err(_) => RevokedAfter::Time(
                    DateTime::parse_from_rfc3339(v)
                        .map_err(|_| bad(format!("revoked-after=`{v}`: give an RFC 3339 time or a record seq")))?
                        .with_timezone(&Utc),
                ),
            });
        }
        let (id, host) = match host {
            "@legacy" => (LEGACY_KEY_ID.to_string(), None),
            h if h.starts_with('@') => return Err(bad(format!("unknown `{h}` (use @legacy or @reader)"))),
            h => (key_id(&public), Some(h.to_string())),
        };
        let listed = |k: &TrustedKey| k.public == public;
        if id == LEGACY_KEY_ID && trust.keys.get(&id).is_some_and(|k| !listed(k)) {
            if trust.other_legacy.iter().any(listed) {
                return Err(bad(format!("legacy key {} is listed twice", key_id(&public))));
            }
            // Another repository's sealed key.
            trust.other_legacy.push(TrustedKey { key_id: id, public, host, revoked_after });
            continue;
        }
        if trust.keys.contains_key(&id) {
            return Err(bad(format!("key {id} is listed twice")));
        }
        trust.keys.insert(id.clone(), TrustedKey { key_id: id, public, host, revoked_after });
    }
    Ok(KeysFile { trust, readers })
}

/// One line of a keys file.
pub fn keys_line(host: &str, public_text: &str) -> String {
    format!("{host:<20} {public_text}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::key::public_text;
    use base64::Engine;
    use ed25519_dalek::SigningKey;

    #[test]
    fn a_keys_file_pins_hosts_the_legacy_key_revocations_and_readers() {
        let a = SigningKey::generate(&mut rand::rngs::OsRng).verifying_key();
        let b = SigningKey::generate(&mut rand::rngs::OsRng).verifying_key();
        let l = SigningKey::generate(&mut rand::rngs::OsRng).verifying_key();
        let reader = format!("cairn-evidence-reader:{}", crate::evidence::key::B64.encode([5u8; 32]));
        let text = format!(
            "# fleet\n{}\n{} revoked-after=2026-03-15T00:00:00Z # left\n@legacy {} revoked-after=0\n\n@reader {reader}\n",
            keys_line("db1", &public_text(&a)),
            keys_line("web-7", &public_text(&b)),
            public_text(&l)
        );
        let k = parse_keys(&text, "k").unwrap();
        assert_eq!(k.readers.len(), 1);
        let t = &k.trust;
        assert_eq!(t.get(&key_id(&a)).unwrap().host.as_deref(), Some("db1"));
        assert!(matches!(t.get(&key_id(&b)).unwrap().revoked_after, Some(RevokedAfter::Time(_))));
        assert_eq!(t.get("legacy").unwrap().revoked_after, Some(RevokedAfter::Seq(0)));
        assert_eq!(t.get("legacy").unwrap().public, l);
        for (bad, why) in [
            ("db1", "expected"),
            ("db1 ssh-ed25519 AAAA", "not an evidence public key"),
            (&format!("db1 {} until=3", public_text(&a)), "unknown option"),
            (&format!("db1 {} revoked-after=yesterday", public_text(&a)), "RFC 3339"),
            (&format!("@root {}", public_text(&a)), "unknown `@root`"),
            (&format!("a {}\nb {}", public_text(&a), public_text(&a)), "listed twice"),
        ] {
            let e = parse_keys(bad, "k").err().unwrap().to_string();
            assert!(e.contains(why) && e.contains("keys file k, line"), "{bad}: {e}");
        }
    }
}
