//! Tests of the report forms, on a hand-made report.

use chrono::{TimeZone, Utc};

use super::*;
use crate::drill::scratch::Cleanup;
use crate::drill::verdict::{FailureKind, Issue, Verdict};

pub(crate) fn sample_report() -> DrillReport {
    let t = Utc.with_ymd_and_hms(2026, 11, 25, 1, 30, 0).unwrap();
    let phase = |name: &str, start_s: f64, duration_s: f64, in_rto: bool| Phase {
        name: name.into(),
        start_s,
        duration_s,
        in_rto,
        error: None,
    };
    DrillReport {
        schema: SCHEMA.into(),
        drill_id: "20261125T013000Z-web-abcdef".into(),
        policy: PolicyInfo {
            name: "web".into(),
            file: "/etc/cairn/policies/web.toml".into(),
            hash: "blake3:00".into(),
        },
        started_by: "alice@host".into(),
        trigger: "command".into(),
        tool: ToolInfo { name: "cairn".into(), version: crate::VERSION.into() },
        times: Times { scheduled_at: None, started_at: t, ended_at: t + chrono::Duration::seconds(3), duration_s: 3.0 },
        seed: 42,
        recovery_point: Some(RecoveryPointInfo {
            choice: "latest".into(),
            window_s: None,
            candidates: 2,
            snapshot_id: "ab".repeat(32),
            time: t - chrono::Duration::hours(5),
            host: "web1".into(),
            paths: vec!["/srv/www".into()],
            tags: vec!["web".into()],
            tree: "cd".repeat(32),
            files: 3,
            bytes: 3000,
            is_newest: true,
        }),
        repository: RepositoryInfo { location: "/srv/repo".into(), id: Some("ef".repeat(32)) },
        environment: Environment {
            host: "drillhost".into(),
            os: "Debian".into(),
            kernel: "6.1".into(),
            arch: "x86_64".into(),
            cpus: 2,
            user: "alice".into(),
            target: "/var/lib/cairn/scratch/x".into(),
            filesystem: Some("ext4".into()),
        },
        scope: Scope { files: 3, dirs: 2, bytes: 3000, threads: 2, ..Default::default() },
        phases: vec![
            phase("open", 0.0, 0.2, true),
            phase("select", 0.2, 0.01, true),
            phase("plan", 0.21, 0.05, true),
            phase("transfer", 0.26, 1.2, true),
            phase("write", 1.46, 0.1, true),
            phase("verify", 1.56, 0.5, true),
            phase("cleanup", 2.06, 0.3, false),
        ],
        first_byte_s: Some(0.1),
        rto: Rto { objective_s: Some(2.0), measured_s: 2.06, met: Some(false) },
        rpo: Rpo {
            objective_s: Some(86400.0),
            achieved_s: Some(18000.0),
            recovery_point_age_s: Some(18000.0),
            newest_snapshot_age_s: Some(18000.0),
            judged_on: "recovery_point".into(),
            met: Some(true),
        },
        integrity: Integrity {
            method: "full".into(),
            compared: vec!["content".into(), "size".into()],
            files_checked: 3,
            bytes_checked: 3000,
            mismatches: 1,
            mismatched: vec![crate::drill::verify::Mismatch {
                path: "/srv/www/<script>|x".into(),
                reason: "content at offset 0 does not match chunk 12".into(),
            }],
            ..Default::default()
        },
        validation: None,
        cleanup: Cleanup {
            path: "/var/lib/cairn/scratch/x".into(),
            action: "removed".into(),
            verified: true,
            ..Default::default()
        },
        verdict: Verdict {
            result: "fail".into(),
            failure_kind: Some(FailureKind::Integrity),
            issues: vec![Issue { kind: FailureKind::Integrity, message: "integrity: 1 restored item(s)".into() }],
        },
        warnings: vec![],
        evidence: None,
    }
}

#[test]
fn json_round_trips_and_checks_its_schema() {
    let r = sample_report();
    let text = json::render(&r);
    assert_eq!(json::parse(&text).unwrap(), r);
    let other = text.replace(SCHEMA, "cairn.drill-report/99");
    assert!(json::parse(&other).unwrap_err().contains("unsupported drill report schema"));
}

#[test]
fn the_body_hash_ignores_the_evidence_and_key_order_but_nothing_else() {
    let mut r = sample_report();
    let unsigned = serde_json::to_value(&r).unwrap();
    let h = body_blake3(&unsigned);
    assert!(h.starts_with("blake3:") && h.len() == 7 + 64, "{h}");
    r.evidence = Some(Evidence {
        status: "signed".into(),
        report_blake3: h.clone(),
        seq: Some(7),
        hash: Some("aa".into()),
        signature: Some("bb".into()),
        note: None,
    });
    let signed: serde_json::Value = serde_json::from_str(&json::render(&r)).unwrap();
    assert_eq!(body_blake3(&signed), h, "adding the evidence section does not change the body hash");
    let mut changed = signed.clone();
    changed["integrity"]["mismatches"] = serde_json::json!(0);
    assert_ne!(body_blake3(&changed), h, "any change to the body changes the hash");
    // Key order does not matter.
    assert_eq!(canonical_json(&serde_json::json!({"b": 1, "a": {"d": 2, "c": 3}})), br#"{"a":{"c":3,"d":2},"b":1}"#);
    // RFC 8785 number and string forms.
    let v = serde_json::json!({"f": [3600.0, 0.071224, -0.0, 1.5, 18446744073709551615u64, -3], "s": "a\"b\\c\u{1}é/"});
    assert_eq!(
        String::from_utf8(canonical_json(&v)).unwrap(),
        r#"{"f":[3600,0.071224,0,1.5,18446744073709551615,-3],"s":"a\"b\\c\u0001é/"}"#
    );
}

#[test]
fn floats_are_rounded_to_microseconds_and_survive_a_round_trip() {
    let mut r = sample_report();
    r.phases[0].duration_s = 0.1 + 0.2;
    r.rto.measured_s = 2.000_000_4;
    let r = rounded(r);
    assert_eq!(r.phases[0].duration_s, 0.3);
    assert_eq!(r.rto.measured_s, 2.0);
    let v = serde_json::to_value(&r).unwrap();
    let reparsed: serde_json::Value = serde_json::from_str(&json::render(&r)).unwrap();
    assert_eq!(body_blake3(&reparsed), body_blake3(&v));
}

#[test]
fn credentials_in_urls_are_masked() {
    assert_eq!(
        mask_userinfo("s3://bucket/p at https://key:secret@garage:3900"),
        "s3://bucket/p at https://***@garage:3900"
    );
    assert_eq!(mask_userinfo("/srv/repo"), "/srv/repo");
    assert_eq!(mask_userinfo("s3://b at http://host:9000"), "s3://b at http://host:9000");
}

#[test]
fn markdown_holds_every_section_and_escapes_table_cells() {
    let md = markdown::render(&sample_report());
    for h in [
        "## Verdict",
        "## Recovery point",
        "## Recovery time (RTO)",
        "## Recovery point age (RPO)",
        "## Integrity",
        "## Validation",
        "## Scope",
        "## Cleanup",
        "## Evidence",
    ] {
        assert!(md.contains(h), "missing {h}:\n{md}");
    }
    assert!(md.contains("FAIL (integrity)"));
    assert!(md.contains("| transfer | 0.260 s | 1.200 s | yes |"), "{md}");
    assert!(md.contains("`/srv/www/<script>\\|x`"), "a | in a path must not break the table:\n{md}");
    assert!(md.contains("No evidence record (not signed)."));
}

#[test]
fn html_is_self_contained_escaped_and_has_the_phase_chart() {
    let page = html::render(&sample_report());
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains("<svg"), "no inline chart");
    assert_eq!(page.matches("<svg").count(), 1);
    for phase in ["open", "transfer", "verify", "cleanup"] {
        assert!(page.contains(&format!(">{phase}<")), "the chart or table lacks {phase}");
    }
    assert!(page.contains("RTO objective"), "the objective (within the chart) is drawn");
    assert!(page.contains("/srv/www/&lt;script&gt;|x"), "paths are escaped");
    assert!(!page.contains("<script"), "no scripts");
    for external in ["src=\"http", "href=\"http", "@import", "url(", "<link", "<img"] {
        assert!(!page.contains(external), "external asset `{external}` in the page");
    }
}
