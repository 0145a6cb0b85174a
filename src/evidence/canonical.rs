//! Canonical JSON: the one byte string that a JSON value signs and hashes as.
//!
//! The rules are those of RFC 8785 (JSON Canonicalization Scheme), with
//! numbers restricted to integers:
//! - no whitespace between tokens;
//! - object members sorted by their names compared as sequences of UTF-16
//!   code units (RFC 8785 §3.2.3); names are unique;
//! - strings as UTF-8, escaping only `"` and `\` (as `\"` and `\\`) and
//!   the control characters U+0000–U+001F: `\b`, `\t`, `\n`, `\f`, `\r`
//!   for those five, `\u00xx` with lowercase hex for the others; every
//!   other character, `/` and U+007F and above included, is written as is;
//! - `true`, `false`, `null` as literals;
//! - numbers: integers only, in ±(2^53 − 1), written in plain decimal
//!   (`-` for negatives, no leading zeros, no `+`, no exponent).
//!
//! Fractions and larger integers are refused rather than given a form,
//! because parsers disagree about them: a record must canonicalise to the
//! same bytes after any correct JSON parser has read it back. Within these
//! rules the output is exactly RFC 8785's.
//!
//! Drill reports, which hold measurements, are hashed in the same form
//! with [`Numbers::Shortest`]: any integer, and other numbers in their
//! shortest round-trip decimal form (the reports round them first).

use serde_json::Value;

/// The largest integer magnitude allowed: 2^53 − 1, the last one every
/// JSON parser (JavaScript's included) represents exactly.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Why a value has no canonical form: the JSON path at fault and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct CanonicalError {
    pub path: String,
    pub reason: String,
}

/// Which numbers have a canonical form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Numbers {
    /// Integers within ±(2^53 − 1) only (evidence records).
    SafeIntegers,
    /// Any integer; other numbers in their shortest round-trip form, in
    /// plain decimal notation when whole.
    Shortest,
}

/// The canonical bytes of `v` (integers only: evidence records).
pub fn to_canonical(v: &Value) -> Result<Vec<u8>, CanonicalError> {
    to_canonical_with(v, Numbers::SafeIntegers)
}

/// The canonical bytes of `v` with the given number rules; with
/// [`Numbers::Shortest`] it never fails.
pub fn to_canonical_with(v: &Value, numbers: Numbers) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(256);
    write_value(v, numbers, &mut out, &mut String::from("$"))?;
    Ok(out)
}

/// A number in its shortest round-trip form.
fn shortest(n: &serde_json::Number) -> String {
    if n.is_u64() || n.is_i64() {
        return n.to_string();
    }
    let x = n.as_f64().unwrap_or(0.0);
    if x == 0.0 {
        "0".into()
    } else if x.fract() == 0.0 && x.abs() < 1e21 {
        format!("{x:.0}")
    } else {
        x.to_string()
    }
}

fn write_value(v: &Value, numbers: Numbers, out: &mut Vec<u8>, path: &mut String) -> Result<(), CanonicalError> {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) if numbers == Numbers::Shortest => out.extend_from_slice(shortest(n).as_bytes()),
        Value::Number(n) => {
            let err = |reason: String| CanonicalError { path: path.clone(), reason };
            if let Some(u) = n.as_u64() {
                if u > MAX_SAFE_INTEGER {
                    return Err(err(format!("{u} is above 2^53 - 1")));
                }
                out.extend_from_slice(u.to_string().as_bytes());
            } else if let Some(i) = n.as_i64() {
                if i.unsigned_abs() > MAX_SAFE_INTEGER {
                    return Err(err(format!("{i} is below -(2^53 - 1)")));
                }
                out.extend_from_slice(i.to_string().as_bytes());
            } else {
                return Err(err(format!(
                    "{n} is not an integer (record fractions as integers: milliseconds, parts per million)"
                )));
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                write_value(item, numbers, out, path)?;
                path.truncate(len);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            // serde_json's map may or may not be sorted (`preserve_order`), and
            // never by UTF-16 units: sort here, whatever it is.
            members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push(b'{');
            for (i, (k, item)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(k, out);
                out.push(b':');
                let len = path.len();
                path.push('.');
                path.push_str(k);
                write_value(item, numbers, out, path)?;
                path.truncate(len);
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '\r' => out.extend_from_slice(b"\\r"),
            c if (c as u32) < 0x20 => out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes()),
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(v: &Value) -> String {
        String::from_utf8(to_canonical(v).unwrap()).unwrap()
    }

    #[test]
    fn members_are_sorted_and_whitespace_is_gone() {
        let v: Value = serde_json::from_str(r#"{ "b": [1, 2, {"z": null, "a": true}], "a": "x", "": false }"#).unwrap();
        assert_eq!(canon(&v), r#"{"":false,"a":"x","b":[1,2,{"a":true,"z":null}]}"#);
    }

    #[test]
    fn names_sort_by_utf16_code_units_as_in_rfc_8785() {
        // RFC 8785 §3.2.3's example: U+1F600 (UTF-16 D83D DE00) sorts before
        // U+FB33, although its code point is larger.
        let v: Value = serde_json::from_str(
            r#"{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One",
                "\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}"#,
        )
        .unwrap();
        let expected = concat!(
            "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",",
            "\"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",",
            "\"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}"
        );
        assert_eq!(canon(&v), expected);
    }

    #[test]
    fn strings_escape_only_what_rfc_8785_escapes() {
        let v = json!("q\"b\\s/\u{8}\t\n\u{c}\r\u{1}\u{1f}\u{7f}é€😀");
        assert_eq!(canon(&v), "\"q\\\"b\\\\s/\\b\\t\\n\\f\\r\\u0001\\u001f\u{7f}é€😀\"");
    }

    #[test]
    fn integers_are_plain_and_fractions_are_refused() {
        assert_eq!(
            canon(&json!([0, -1, 42, 9007199254740991_u64, -9007199254740991_i64])),
            "[0,-1,42,9007199254740991,-9007199254740991]"
        );
        let e = to_canonical(&json!({"payload": {"d": [1, 41.7]}})).unwrap_err();
        assert_eq!(e.path, "$.payload.d[1]");
        assert!(to_canonical(&json!(5.0)).is_err(), "a float stays refused even when whole");
        assert!(to_canonical(&json!(9007199254740992_u64)).is_err());
        assert!(to_canonical(&json!(-9007199254740992_i64)).is_err());
        assert!(to_canonical(&json!(u64::MAX)).is_err());
    }

    #[test]
    fn parsing_the_canonical_text_gives_it_back() {
        let v = json!({"seq": 3, "kind": "backup", "prev": null, "payload": {"files": 12, "note": "ünï\u{0}"}});
        let c = to_canonical(&v).unwrap();
        let back: Value = serde_json::from_slice(&c).unwrap();
        assert_eq!(back, v);
        assert_eq!(to_canonical(&back).unwrap(), c);
        // Same value, other text: same canonical bytes.
        let other: Value =
            serde_json::from_str("{\"payload\":{\"note\":\"\\u00fcn\\u00ef\\u0000\",\"files\":12},\"prev\":null,\"seq\":3,\"kind\":\"backup\"}")
                .unwrap();
        assert_eq!(to_canonical(&other).unwrap(), c);
    }
}
