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

/// A duration for people, as both report stacks write it: `0.42 s` and
/// `42.40 s` under a minute (drill times matter to the hundredth), then
/// the two largest units, the smaller one left out when it is zero:
/// `3 min 20 s`, `5 h 2 min`, `26 h`, `3 d`, `2 d 3 h`. Parts are cut, not
/// rounded up, so a duration never reads longer than it was.
pub fn human_duration(secs: f64) -> String {
    let s = secs.max(0.0);
    let whole = s as u64;
    let two = |big: u64, big_unit: &str, small: u64, small_unit: &str| {
        if small == 0 {
            format!("{big} {big_unit}")
        } else {
            format!("{big} {big_unit} {small} {small_unit}")
        }
    };
    match whole {
        0..=59 => format!("{s:.2} s"),
        60..=3599 => two(whole / 60, "min", whole % 60, "s"),
        3600..=86_399 => two(whole / 3600, "h", whole % 3600 / 60, "min"),
        _ => two(whole / 86_400, "d", whole % 86_400 / 3600, "h"),
    }
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

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(super::human_bytes(512), "512 B");
        assert_eq!(super::human_bytes(1536), "1.5 KiB");
        assert_eq!(super::human_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn durations_read_the_same_in_every_report() {
        use super::{human_duration as d, human_duration_opt};
        assert_eq!(d(0.423), "0.42 s");
        assert_eq!(d(42.4), "42.40 s");
        assert_eq!(d(-1.0), "0.00 s");
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
}
