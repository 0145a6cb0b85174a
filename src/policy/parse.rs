//! Reading a policy file: TOML with spans, checked field by field.
//!
//! The TOML parser gives a tree in which every key and value carries its
//! byte span ([`toml::de::DeTable`]). [`Cx`] walks it with typed getters
//! that record a [`super::Diagnostic`] for each problem and carry on, so one
//! pass finds them all; the schema (`schema.rs`, which starts the walk)
//! says which fields each table has and what their values must be.
//! Conventions:
//!
//! - a type error or bad value points at the value; an unknown field at its
//!   key; a missing field at the table that should hold it;
//! - inside a string whose text maps one to one onto the file (no escapes),
//!   a position points at the part at fault (the wrong cron field);
//! - `password` and other secret-looking keys are refused wherever they
//!   are, and their values are never repeated.

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::diag::{did_you_mean, Sink};
use super::schedule::CronExpr;
use crate::duration::Duration;

pub(crate) type Val<'i> = Spanned<DeValue<'i>>;

/// Keys refused anywhere, with what to write instead.
const SECRET_KEYS: &[(&str, &str)] = &[
    ("password", "a password must not be written in a policy: use password_env, password_file or password_command"),
    ("passphrase", "a password must not be written in a policy: use password_env, password_file or password_command"),
    ("access_key_id", "S3 credentials must not be written in a policy: they come from the standard AWS chain (AWS_ACCESS_KEY_ID, ~/.aws/credentials, instance roles)"),
    ("secret_access_key", "S3 credentials must not be written in a policy: they come from the standard AWS chain (AWS_SECRET_ACCESS_KEY, ~/.aws/credentials, instance roles)"),
    ("secret_key", "S3 credentials must not be written in a policy: they come from the standard AWS chain (AWS_SECRET_ACCESS_KEY, ~/.aws/credentials, instance roles)"),
];

/// Line and column of the `name` value (for "name already used").
pub(crate) fn name_position(src: &str) -> (usize, usize) {
    let at = DeTable::parse(src).ok().and_then(|t| t.get_ref().get("name").map(|v| v.span().start)).unwrap_or(0);
    super::diag::Locator::new(src).position(at)
}

/// A table being read, with its dotted path and where it starts.
pub(crate) struct Tbl<'a, 'i> {
    pub(crate) path: String,
    pub(crate) t: &'a DeTable<'i>,
    pub(crate) at: usize,
}

impl<'a, 'i> Tbl<'a, 'i> {
    pub(crate) fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&'a Val<'i>> {
        self.t.get(key)
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.t.get(key).is_some()
    }

    /// Where `key`'s value starts, or the table when it is absent.
    pub(crate) fn at(&self, key: &str) -> usize {
        self.get(key).map(|v| v.span().start).unwrap_or(self.at)
    }

    /// Where `key` itself is written, or the table when it is absent.
    pub(crate) fn key_at(&self, key: &str) -> usize {
        self.t.get_key_value(key).map(|(k, _)| k.span().start).unwrap_or(self.at)
    }
}

fn article(ty: &str) -> String {
    if ty.starts_with(['a', 'e', 'i', 'o', 'u']) {
        format!("an {ty}")
    } else {
        format!("a {ty}")
    }
}

/// The checking context: the diagnostics found so far.
pub(crate) struct Cx<'s> {
    pub(crate) sink: Sink<'s>,
    /// The table a field belongs in, for "unknown field here" (the schema's).
    pub(crate) section_of: fn(&str) -> Option<&'static str>,
}

impl Cx<'_> {
    pub(crate) fn error(&mut self, at: usize, field: impl Into<String>, msg: impl Into<String>) {
        self.sink.error(at, field, msg);
    }

    /// Refuses secret-looking keys anywhere in the tree.
    pub(crate) fn secrets(&mut self, t: &DeTable<'_>, path: &str) {
        for (k, v) in t.iter() {
            let field = if path.is_empty() { k.get_ref().to_string() } else { format!("{path}.{}", k.get_ref()) };
            if let Some((_, msg)) = SECRET_KEYS.iter().find(|(s, _)| k.get_ref().eq_ignore_ascii_case(s)) {
                self.error(k.span().start, &field, *msg);
            }
            match v.get_ref() {
                DeValue::Table(sub) => self.secrets(sub, &field),
                DeValue::Array(a) => {
                    for item in a.iter() {
                        if let DeValue::Table(sub) = item.get_ref() {
                            self.secrets(sub, &field);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// Reports every key of `t` not in `known`, with a suggestion.
    pub(crate) fn known_keys(&mut self, t: &Tbl<'_, '_>, known: &[&str]) {
        for (k, _) in t.t.iter() {
            let key = k.get_ref().as_ref();
            if known.contains(&key) || SECRET_KEYS.iter().any(|(s, _)| key.eq_ignore_ascii_case(s)) {
                continue;
            }
            let msg = if let Some(m) = did_you_mean(key, known) {
                format!("unknown field; did you mean `{m}`?")
            } else if let Some(section) = (self.section_of)(key) {
                format!("unknown field here; `{key}` belongs in [{section}]")
            } else {
                format!("unknown field; expected one of: {}", known.join(", "))
            };
            self.error(k.span().start, t.field(key), msg);
        }
    }

    /// Reports `key` missing from `t` when it is.
    pub(crate) fn require(&mut self, t: &Tbl<'_, '_>, key: &str, what: &str) -> bool {
        if t.has(key) {
            return true;
        }
        let msg = if t.path.is_empty() {
            format!("missing: expected {what}")
        } else {
            format!("missing: expected {what} in [{}]", t.path)
        };
        self.error(t.at, t.field(key), msg);
        false
    }

    fn wrong_type(&mut self, v: &Val<'_>, field: String, expected: &str) {
        let found = article(v.get_ref().type_str());
        self.error(v.span().start, field, format!("expected {expected}, found {found}"));
    }

    pub(crate) fn table<'a, 'i>(&mut self, t: &Tbl<'a, 'i>, key: &str) -> Option<Tbl<'a, 'i>> {
        let v = t.get(key)?;
        match v.get_ref() {
            DeValue::Table(sub) => Some(Tbl { path: t.field(key), t: sub, at: v.span().start }),
            _ => {
                self.wrong_type(v, t.field(key), &format!("a table ([{}])", t.field(key)));
                None
            }
        }
    }

    /// A string value and the offset of its first character in the file
    /// when its text is written without escapes (else of its quote).
    pub(crate) fn string(&mut self, t: &Tbl<'_, '_>, key: &str) -> Option<(String, usize)> {
        let v = t.get(key)?;
        self.string_value(v, t.field(key))
    }

    fn string_value(&mut self, v: &Val<'_>, field: String) -> Option<(String, usize)> {
        match v.get_ref() {
            DeValue::String(s) => {
                let span = v.span();
                let raw = &self.sink.src()[span.clone()];
                let plain = raw.len() >= 2
                    && !raw.starts_with("\"\"\"")
                    && !raw.starts_with("'''")
                    && &raw[1..raw.len() - 1] == s.as_ref();
                Some((s.to_string(), if plain { span.start + 1 } else { span.start }))
            }
            _ => {
                self.wrong_type(v, field, "a string");
                None
            }
        }
    }

    /// A string that must not be empty.
    pub(crate) fn text(&mut self, t: &Tbl<'_, '_>, key: &str) -> Option<String> {
        let (s, at) = self.string(t, key)?;
        if s.trim().is_empty() {
            self.error(at, t.field(key), "expected a non-empty string");
            return None;
        }
        Some(s)
    }

    pub(crate) fn boolean(&mut self, t: &Tbl<'_, '_>, key: &str) -> Option<bool> {
        let v = t.get(key)?;
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.wrong_type(v, t.field(key), "true or false");
                None
            }
        }
    }

    /// An integer in `min..=max`.
    pub(crate) fn integer(&mut self, t: &Tbl<'_, '_>, key: &str, min: i64, max: i64) -> Option<i64> {
        let v = t.get(key)?;
        let DeValue::Integer(i) = v.get_ref() else {
            self.wrong_type(v, t.field(key), "an integer");
            return None;
        };
        match i64::from_str_radix(&i.as_str().replace('_', ""), i.radix()) {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.error(v.span().start, t.field(key), format!("expected an integer from {min} to {max}, found {i}"));
                None
            }
        }
    }

    /// A number (integer or float) in `(0, max]`.
    pub(crate) fn positive_number(&mut self, t: &Tbl<'_, '_>, key: &str, max: f64) -> Option<f64> {
        let v = t.get(key)?;
        let n = match v.get_ref() {
            DeValue::Integer(i) => i.as_str().replace('_', "").parse::<f64>().ok(),
            DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().ok(),
            _ => {
                self.wrong_type(v, t.field(key), "a number");
                return None;
            }
        };
        match n {
            Some(n) if n > 0.0 && n <= max => Some(n),
            _ => {
                self.error(v.span().start, t.field(key), format!("expected a number above 0 and at most {max}"));
                None
            }
        }
    }

    /// The strings of an array, each with its offset (items that are not
    /// strings are reported and left out); `None` if it is not an array.
    pub(crate) fn strings(&mut self, t: &Tbl<'_, '_>, key: &str) -> Option<Vec<(String, usize)>> {
        let v = t.get(key)?;
        let DeValue::Array(a) = v.get_ref() else {
            self.wrong_type(v, t.field(key), "an array of strings");
            return None;
        };
        let field = t.field(key);
        Some(a.iter().enumerate().filter_map(|(i, item)| self.string_value(item, format!("{field}[{i}]"))).collect())
    }

    /// A duration; `positive` refuses zero.
    pub(crate) fn duration(&mut self, t: &Tbl<'_, '_>, key: &str, positive: bool) -> Option<Duration> {
        let (s, at) = self.string(t, key)?;
        match s.parse::<Duration>() {
            Ok(d) if positive && d.is_zero() => {
                self.error(at, t.field(key), "expected a duration above zero");
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.error(at, t.field(key), e);
                None
            }
        }
    }

    /// A cron expression; each wrong part is reported where it is.
    pub(crate) fn cron(&mut self, t: &Tbl<'_, '_>, key: &str) -> Option<CronExpr> {
        let v = t.get(key)?;
        let (s, at) = self.string_value(v, t.field(key))?;
        // Offsets inside the string are exact only when it maps onto the file.
        let exact = at != v.span().start;
        match CronExpr::parse(&s) {
            Ok(c) => Some(c),
            Err(errors) => {
                for e in errors {
                    let pos = if exact { at + e.offset } else { at };
                    self.error(pos, t.field(key), format!("bad cron expression \"{s}\": {}", e.message));
                }
                None
            }
        }
    }
}
