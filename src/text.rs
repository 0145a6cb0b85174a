//! Text shared by the command line and the reports: human-readable
//! quantities (sizes, durations), and escaping for HTML and Markdown
//! tables. The drill reports and the compliance report show durations
//! through the one [`human_duration`].

/// `512 B`, `1.5 KiB`, `3.2 GiB` (powers of 1024).
pub fn human_bytes(n: u64) -> String {
    const U: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

/// A duration in whole tenths of a second, cut (never rounded up). The
/// tiny bias absorbs binary fractions: `0.3` is 2.9999… tenths in `f64`.
fn tenths(secs: f64) -> u64 {
    (secs.max(0.0) * 10.0 + 1e-6).floor() as u64
}

/// Whether a measured time or age is above its objective. Both are judged
/// in tenths of a second, the resolution they are shown in: a measured
/// `1.04 s` meets a `1 s` objective (it reads `1.0 s`), `1.1 s` does not,
/// and `60.4 s` misses `1 min`. Every verdict on an objective (the drill's,
/// the compliance report's) goes through here, so what is judged is what
/// is shown.
pub fn exceeds(measured: f64, objective: f64) -> bool {
    tenths(measured) > tenths(objective)
}

/// A duration for people, as both report stacks write it: `0.4 s` and
/// `42.4 s` under a minute (tenths, the resolution objectives are judged
/// in), then the two largest units, the smaller one left out when it is
/// zero: `3 min 20 s`, `5 h 2 min`, `26 h`, `3 d`, `2 d 3 h`. Parts are cut,
/// not rounded up, so a duration never reads longer than it was.
pub fn human_duration(secs: f64) -> String {
    let t = tenths(secs);
    let whole = t / 10;
    let two = |big: u64, big_unit: &str, small: u64, small_unit: &str| {
        if small == 0 {
            format!("{big} {big_unit}")
        } else {
            format!("{big} {big_unit} {small} {small_unit}")
        }
    };
    match whole {
        0..=59 => format!("{whole}.{} s", t % 10),
        60..=3599 => two(whole / 60, "min", whole % 60, "s"),
        3600..=86_399 => two(whole / 3600, "h", whole % 3600 / 60, "min"),
        _ => two(whole / 86_400, "d", whole % 86_400 / 3600, "h"),
    }
}

/// Every unit down to tenths of a second: `1 min 0.4 s`, `1 h 0 min 0.4 s`.
fn precise_duration(secs: f64) -> String {
    let t = tenths(secs);
    let (whole, tenth) = (t / 10, t % 10);
    let s = format!("{}.{tenth} s", whole % 60);
    match whole {
        0..=59 => s,
        60..=3599 => format!("{} min {s}", whole / 60),
        3600..=86_399 => format!("{} h {} min {s}", whole / 3600, whole % 3600 / 60),
        _ => format!("{} d {} h {} min {s}", whole / 86_400, whole % 86_400 / 3600, whole % 3600 / 60),
    }
}

/// A measured value shown beside its objective: [`human_duration`], unless
/// the value [`exceeds`] the objective and would read the same as it (`60.4
/// s` against `1 min`); then every unit down to tenths (`1 min 0.4 s`), so a
/// missed objective never reads as met.
pub fn human_duration_against(measured: f64, objective: Option<f64>) -> String {
    let plain = human_duration(measured);
    match objective {
        Some(o) if exceeds(measured, o) && plain == human_duration(o) => precise_duration(measured),
        _ => plain,
    }
}

/// [`human_duration_against`] for a value that may be absent (`—`).
pub fn human_duration_opt_against(measured: Option<f64>, objective: Option<f64>) -> String {
    measured.map(|m| human_duration_against(m, objective)).unwrap_or_else(|| "—".into())
}

/// [`human_duration`], or `—` when there is none.
pub fn human_duration_opt(secs: Option<f64>) -> String {
    secs.map(human_duration).unwrap_or_else(|| "—".into())
}

/// Escapes text for HTML content and attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes text for a Markdown table cell.
pub fn markdown_cell(s: &str) -> String {
    s.replace('\\', "\\\\").replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// The first `chars` characters of `s`, for showing an id that came from a
/// record or a snapshot (which anyone who signs may fill with any text):
/// cut at a character, never inside one, with control characters shown as
/// `?` so that no name can move a terminal's cursor or forge a line.
pub fn id_prefix(s: &str, chars: usize) -> String {
    s.chars().take(chars).map(|c| if c.is_control() { '?' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_id_prefix_cuts_at_a_character_and_shows_no_control_character() {
        assert_eq!(super::id_prefix("0123456789abcdef", 8), "01234567");
        assert_eq!(super::id_prefix("éééééééééé", 8), "éééééééé");
        assert_eq!(super::id_prefix("ab\u{1b}[2J\nforged", 8), "ab?[2J?f");
        assert_eq!(super::id_prefix("abc", 8), "abc");
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(super::human_bytes(512), "512 B");
        assert_eq!(super::human_bytes(1536), "1.5 KiB");
        assert_eq!(super::human_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn durations_read_the_same_in_every_report() {
        use super::{human_duration as d, human_duration_opt};
        assert_eq!(d(0.423), "0.4 s");
        assert_eq!(d(0.3), "0.3 s", "0.3 is 2.999… tenths in binary");
        assert_eq!(d(0.99), "0.9 s", "cut, not rounded up");
        assert_eq!(d(42.4), "42.4 s");
        assert_eq!(d(59.99), "59.9 s");
        assert_eq!(d(-1.0), "0.0 s");
        assert_eq!(d(120.0), "2 min");
        assert_eq!(d(200.9), "3 min 20 s", "cut, not rounded up");
        assert_eq!(d(4000.0), "1 h 6 min");
        assert_eq!(d(18_120.0), "5 h 2 min");
        assert_eq!(d(93_600.0), "1 d 2 h");
        assert_eq!(d(3.0 * 86_400.0), "3 d");
        assert_eq!(d(2.0 * 86_400.0 + 3.0 * 3600.0 + 59.0), "2 d 3 h");
        assert_eq!(human_duration_opt(None), "—");
        assert_eq!(human_duration_opt(Some(60.0)), "1 min");
    }

    #[test]
    fn objectives_are_judged_in_the_tenths_they_are_shown_in() {
        use super::exceeds;
        assert!(!exceeds(1.0, 1.0));
        assert!(!exceeds(1.04, 1.0), "reads 1.0 s: meets a 1 s objective");
        assert!(exceeds(1.1, 1.0));
        assert!(exceeds(1.77, 1.0));
        assert!(!exceeds(0.3, 0.3));
        assert!(exceeds(60.4, 60.0));
        assert!(!exceeds(59.0, 60.0));
        assert!(exceeds(86_460.0, 86_400.0));
    }

    #[test]
    fn a_missed_objective_never_reads_equal_to_it() {
        use super::{human_duration as d, human_duration_against as against, human_duration_opt_against};
        // The reported case: RTO objective 1 min, measured 60.4 s.
        assert_eq!(d(60.4), d(60.0), "the plain form alone would hide the miss");
        assert_eq!(against(60.4, Some(60.0)), "1 min 0.4 s");
        assert_eq!(against(3600.5, Some(3600.0)), "1 h 0 min 0.5 s");
        assert_eq!(against(86_400.0 + 60.0, Some(86_400.0)), "1 d 0 h 1 min 0.0 s");
        // Under a minute tenths already tell them apart.
        assert_eq!(against(1.77, Some(1.0)), "1.7 s");
        // A met objective, or a miss the plain form already shows, stays plain.
        assert_eq!(against(60.0, Some(60.0)), "1 min");
        assert_eq!(against(59.0, Some(60.0)), "59.0 s");
        assert_eq!(against(200.0, Some(60.0)), "3 min 20 s");
        assert_eq!(against(60.4, None), "1 min");
        assert_eq!(human_duration_opt_against(None, Some(1.0)), "—");
        // Whatever the pair, a value above its objective reads differently.
        for (m, o) in [(60.05, 60.0), (60.1, 60.0), (120.9, 120.0), (7200.2, 7200.0), (1.05, 1.0), (1.15, 1.1)] {
            if super::exceeds(m, o) {
                assert_ne!(against(m, Some(o)), d(o), "{m} against {o}");
            }
        }
    }
}
