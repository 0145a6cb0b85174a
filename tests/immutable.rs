//! Backups that survive a compromised host (issue 13), against moto's S3
//! with Object Lock and the IAM policies of `docs/STORAGE.md` enforced.
//!
//! moto is a test double of AWS, not a storage system (the data path is
//! tested on Garage); `tests/moto/aws_rules.py` adds the AWS rules moto
//! lacks. The three role users are made from the policy JSON that
//! `docs/STORAGE.md` prints, so the document and the test cannot drift.

mod common;
mod moto;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ObjectLockRetention, ObjectLockRetentionMode};
use chrono::{DateTime, Utc};
use common::{assert_same_tree, random_bytes, restored, wait_until, PASSWORD};
use moto::{Creds, Moto, S3};

const PREFIX: &str = "host1";

/// A role's IAM policy as `docs/STORAGE.md` prints it, for `bucket`.
fn policy_from_doc(role: &str, bucket: &str) -> serde_json::Value {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/STORAGE.md")).unwrap();
    let marker = format!("<!-- policy: {role} -->");
    let after = &doc[doc.find(&marker).unwrap_or_else(|| panic!("no `{marker}` in docs/STORAGE.md"))..];
    let start = after.find("```json\n").unwrap() + "```json\n".len();
    let end = start + after[start..].find("```").unwrap();
    let text = after[start..end].replace("my-backups", bucket);
    assert!(text.contains(&format!("{bucket}/{PREFIX}/")), "the policy names the repository's prefix");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{role} policy in docs/STORAGE.md: {e}"))
}

struct Scene {
    moto: Moto,
    dir: tempfile::TempDir,
    bucket: String,
    backup: Creds,
    maintenance: Creds,
    auditor: Creds,
    admin: Creds,
}

impl Scene {
    /// moto with a bucket (with Object Lock when `lock`), the three role
    /// users and an administrator, IAM enforced.
    fn new(lock: bool) -> Scene {
        let moto = Moto::start();
        let bucket = "cairn-immutable".to_string();
        let setup = moto.client(&Creds { key_id: "setup".into(), secret: "setup".into() });
        setup.run(setup.client.create_bucket().bucket(&bucket).object_lock_enabled_for_bucket(lock).send()).unwrap();
        let backup = moto.user("backup-host", &policy_from_doc("backup-host", &bucket));
        let maintenance = moto.user("maintenance-host", &policy_from_doc("maintenance-host", &bucket));
        let auditor = moto.user("auditor", &policy_from_doc("auditor", &bucket));
        let everything = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{ "Effect": "Allow", "Action": "*", "Resource": "*" }]
        });
        let admin = moto.user("admin", &everything);
        moto.enforce();
        Scene { moto, dir: tempfile::tempdir().unwrap(), bucket, backup, maintenance, auditor, admin }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn command(&self, creds: &Creds) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
        self.moto.apply_env(&mut c, creds);
        c.env("CAIRN_REPO", format!("s3://{}/{PREFIX}", self.bucket))
            .env("CAIRN_PASSWORD", PASSWORD)
            .env("CAIRN_CACHE_DIR", self.path("cache"))
            .env("CAIRN_STATE_DIR", self.path("state"))
            .env_remove("CAIRN_PASSWORD_FILE")
            .env_remove("CAIRN_PASSWORD_COMMAND")
            .stdin(std::process::Stdio::null());
        c
    }

    fn cairn(&self, creds: &Creds, args: &[&str]) -> Output {
        self.command(creds).args(args).output().unwrap()
    }

    fn ok(&self, creds: &Creds, args: &[&str]) -> String {
        let out = self.cairn(creds, args);
        assert!(
            out.status.success(),
            "cairn {args:?} failed ({:?}): {}\nmoto:\n{}",
            out.status.code(),
            text(&out.stderr),
            tail(&self.moto.log())
        );
        text(&out.stdout)
    }

    /// Runs cairn, which must fail at once naming `permission` and the maintenance role.
    fn refused(&self, creds: &Creds, args: &[&str], permission: &str) {
        let out = self.cairn(creds, args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "cairn {args:?} should fail: {err}");
        assert!(err.contains(permission) && err.contains("maintenance host"), "cairn {args:?}: {err}");
    }

    fn s3(&self, creds: &Creds) -> S3 {
        self.moto.client(creds)
    }

    fn full(&self, key: &str) -> String {
        format!("{PREFIX}/{key}")
    }

    /// Every version and delete marker under the repository, outside
    /// `locks/`: (key, version id, is a delete marker, is the latest).
    fn history(&self) -> BTreeSet<(String, String, bool, bool)> {
        let s3 = self.s3(&self.admin);
        let mut out: BTreeSet<(String, String, bool, bool)> = BTreeSet::new();
        let mut marker: (Option<String>, Option<String>) = (None, None);
        loop {
            let page = s3
                .run(
                    s3.client
                        .list_object_versions()
                        .bucket(&self.bucket)
                        .prefix(format!("{PREFIX}/"))
                        .set_key_marker(marker.0.clone())
                        .set_version_id_marker(marker.1.clone())
                        .send(),
                )
                .unwrap();
            for v in page.versions() {
                out.insert((
                    v.key().unwrap().into(),
                    v.version_id().unwrap().into(),
                    false,
                    v.is_latest().unwrap_or(false),
                ));
            }
            for m in page.delete_markers() {
                out.insert((
                    m.key().unwrap().into(),
                    m.version_id().unwrap().into(),
                    true,
                    m.is_latest().unwrap_or(false),
                ));
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            marker = (page.next_key_marker().map(String::from), page.next_version_id_marker().map(String::from));
        }
        out.retain(|(k, ..)| !k.starts_with(&format!("{PREFIX}/locks/")));
        out
    }

    /// The current keys of the repository (relative), outside `locks/`.
    fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .history()
            .into_iter()
            .filter(|(_, _, marker, latest)| *latest && !marker)
            .map(|(k, ..)| k.strip_prefix(&format!("{PREFIX}/")).unwrap().to_string())
            .collect();
        keys.sort();
        keys
    }

    /// The newest store time of anything in the repository, and then
    /// waits until the storage's clock is past it: whatever happens after
    /// this returns is stamped later.
    fn now_on_the_storage(&self) -> DateTime<Utc> {
        let s3 = self.s3(&self.admin);
        let newest = self.newest_store_time(&s3);
        let mut tick = 0;
        wait_until("the storage's clock to pass the last write", Duration::from_secs(30), || {
            tick += 1;
            let k = format!("clock/{tick}");
            s3.run(s3.client.put_object().bucket(&self.bucket).key(&k).body(ByteStream::from_static(b"t")).send())
                .unwrap();
            let h = s3.run(s3.client.head_object().bucket(&self.bucket).key(&k).send()).unwrap();
            to_chrono(h.last_modified().unwrap()) > newest
        });
        newest
    }

    fn newest_store_time(&self, s3: &S3) -> DateTime<Utc> {
        let page =
            s3.run(s3.client.list_object_versions().bucket(&self.bucket).prefix(format!("{PREFIX}/")).send()).unwrap();
        assert_ne!(page.is_truncated(), Some(true), "a test repository lists in one page");
        let v = page.versions().iter().filter_map(|v| v.last_modified());
        let m = page.delete_markers().iter().filter_map(|m| m.last_modified());
        v.chain(m).map(to_chrono).max().unwrap()
    }
}

fn to_chrono(t: &aws_sdk_s3::primitives::DateTime) -> DateTime<Utc> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos()).unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn make_tree(dir: &Path, seed: u64) {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("big.bin"), random_bytes(700_000, seed)).unwrap();
    std::fs::write(dir.join("sub/small"), format!("small file {seed}\n")).unwrap();
    std::fs::write(dir.join("notes.txt"), "notes\n".repeat(2000)).unwrap();
}

/// An S3 error's code, or "ok".
fn code<T, E: ProvideErrorMetadata>(
    r: Result<T, aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>>,
) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => e.code().map(String::from).unwrap_or_else(|| format!("{:?}", e.raw_response().map(|r| r.status()))),
    }
}

/// Snapshot ids and their paths, oldest first.
fn snapshots(json: &str) -> Vec<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap().into(), s["paths"][0].as_str().unwrap().into()))
        .collect()
}

#[test]
fn a_compromised_backup_host_cannot_destroy_or_alter_backups_and_the_past_brings_back_what_maintenance_deleted() {
    let e = Scene::new(true);
    let (backup, maintenance) = (e.backup.clone(), e.maintenance.clone());
    e.ok(
        &maintenance,
        &[
            "init",
            "--immutable",
            "30d",
            "--kdf-memory-kib",
            "19456",
            "--chunk-sizes",
            "16384,65536,262144",
            "--pack-size-mib",
            "1",
        ],
    );
    let (src1, src2, src3) = (e.path("src1"), e.path("src2"), e.path("src3"));
    make_tree(&src1, 1);
    make_tree(&src2, 2);
    make_tree(&src3, 3);
    let policies = e.path("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join("web.toml"),
        format!(
            "name = \"web\"\n[source]\npaths = [\"{}\"]\n[repository]\nurl = \"s3://{}/{PREFIX}\"\n",
            src1.display(),
            e.bucket
        ),
    )
    .unwrap();
    // The backup host backs up (one of them as a policy, to drill it),
    // adds a password, checks, restores and drills.
    e.ok(&backup, &["backup", "--policy", "web", "--policies", policies.to_str().unwrap()]);
    e.ok(&backup, &["backup", src2.to_str().unwrap()]);
    // One to forget later: its data is prune's garbage.
    e.ok(&backup, &["backup", "--tag", "temp", src3.to_str().unwrap()]);
    let slot = e.command(&backup).args(["key", "add"]).env("CAIRN_NEW_PASSWORD", "second").output().unwrap();
    assert!(slot.status.success(), "{}", text(&slot.stderr));
    let other_slot = text(&slot.stdout).trim().to_string();
    e.ok(&backup, &["check", "--read-data"]);
    let drill = ["drill", "--policy", "web", "--policies", policies.to_str().unwrap(), "--full", "--json"];
    e.ok(&backup, &drill);
    let snaps = snapshots(&e.ok(&backup, &["snapshots", "--json"]));
    assert_eq!(snaps.len(), 3);

    // Every object but the locks is locked for the window and more: the
    // evidence heads too, which the backup host cannot take back.
    let admin = e.s3(&e.admin);
    let keys = e.keys();
    assert!(keys.iter().any(|k| k.starts_with("evidence/heads/")), "the appends wrote heads: {keys:?}");
    let month = Utc::now() + chrono::Duration::days(30);
    for k in &keys {
        let h = admin.run(admin.client.head_object().bucket(&e.bucket).key(e.full(k)).send()).unwrap();
        let until = h.object_lock_retain_until_date().map(to_chrono);
        assert!(until.is_some_and(|u| u > month), "{k} is locked only until {until:?}");
        assert_eq!(h.object_lock_mode().map(|m| m.as_str()), Some("COMPLIANCE"), "{k}");
    }
    let before_attack = e.now_on_the_storage();
    let history = e.history();

    // The attacker: the backup host's credential and the repository password.
    e.refused(&backup, &["forget", "--keep-last", "1"], "s3:DeleteObject on s3://cairn-immutable/host1/snapshots/*");
    e.refused(&backup, &["prune"], "s3:DeleteObject on s3://cairn-immutable/host1/data/*");
    e.refused(&backup, &["key", "remove", &other_slot[..8]], "s3:DeleteObject on s3://cairn-immutable/host1/keys/*");
    e.refused(&backup, &["retention", "extend"], "s3:PutObject on s3://cairn-immutable/host1/maintenance/*");
    let pick = |dir: &str| keys.iter().find(|k| k.starts_with(dir)).unwrap_or_else(|| panic!("no {dir}")).clone();
    let targets = [
        pick("data/"),
        pick("snapshots/"),
        pick("index/"),
        pick("keys/"),
        pick("evidence/records/"),
        pick("evidence/heads/"),
        "config".into(),
    ];
    let attacker = e.s3(&backup);
    let version_of =
        |k: &str| history.iter().find(|(key, _, m, latest)| key == &e.full(k) && !m && *latest).unwrap().1.clone();
    for k in &targets {
        let full = e.full(k);
        let del = attacker.run(attacker.client.delete_object().bucket(&e.bucket).key(&full).send());
        assert_eq!(code(del), "AccessDenied", "DeleteObject {k}");
        let del_version =
            attacker.run(attacker.client.delete_object().bucket(&e.bucket).key(&full).version_id(version_of(k)).send());
        assert_eq!(code(del_version), "AccessDenied", "DeleteObject {k} with its version id");
        let overwrite = attacker.run(
            attacker.client.put_object().bucket(&e.bucket).key(&full).body(ByteStream::from_static(b"ransom")).send(),
        );
        assert_eq!(code(overwrite), "AccessDenied", "PutObject over {k}");
        let conditional = attacker.run(
            attacker
                .client
                .put_object()
                .bucket(&e.bucket)
                .key(&full)
                .if_none_match("*")
                .body(ByteStream::from_static(b"ransom"))
                .send(),
        );
        assert_eq!(code(conditional), "PreconditionFailed", "PutObject If-None-Match over {k}");
        for mode in [ObjectLockRetentionMode::Compliance, ObjectLockRetentionMode::Governance] {
            let shorter = ObjectLockRetention::builder()
                .mode(mode.clone())
                .retain_until_date(aws_sdk_s3::primitives::DateTime::from_secs(Utc::now().timestamp() + 120))
                .build();
            let r = attacker
                .run(attacker.client.put_object_retention().bucket(&e.bucket).key(&full).retention(shorter).send());
            assert_eq!(code(r), "AccessDenied", "shortening the retention of {k} ({mode:?})");
        }
    }
    let batch = aws_sdk_s3::types::Delete::builder()
        .set_objects(Some(
            targets
                .iter()
                .map(|k| aws_sdk_s3::types::ObjectIdentifier::builder().key(e.full(k)).build().unwrap())
                .collect(),
        ))
        .build()
        .unwrap();
    let bulk = attacker.run(attacker.client.delete_objects().bucket(&e.bucket).delete(batch).send());
    if let Ok(out) = &bulk {
        assert!(out.deleted().is_empty(), "DeleteObjects deleted {:?}", out.deleted());
    }
    assert_eq!(e.history(), history, "the attack changed the repository's history");

    // Nothing was lost: checks, restores and the evidence chain hold.
    e.ok(&backup, &["check", "--read-data"]);
    for (i, (id, path)) in snaps.iter().enumerate() {
        let t = e.path(&format!("restore-{i}"));
        e.ok(&backup, &["restore", &id[..8], "--target", t.to_str().unwrap(), "--verify"]);
        assert_same_tree(Path::new(path), &restored(&t, Path::new(path)));
    }
    let ev = e.path("evidence");
    e.ok(&backup, &["evidence", "export", "--out", ev.to_str().unwrap()]);
    let verify = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .env_clear()
        .args(["evidence", "verify", ev.to_str().unwrap(), "--pubkey", ev.join("pubkey.txt").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify.stdout));

    // The maintenance credential may delete: forget, prune, then delete
    // everything it can. Deletion leaves delete markers; history stays.
    assert_eq!(e.ok(&backup, &["key", "list"]).lines().count(), 2, "the refused key remove removed nothing");
    e.ok(&maintenance, &["key", "remove", &other_slot[..8]]);
    assert_eq!(e.ok(&maintenance, &["key", "list"]).lines().count(), 1);
    e.ok(&maintenance, &["forget", "--tag", "temp", "--keep-tag", "keep"]);
    let prune = e.cairn(&maintenance, &["prune"]);
    let said = text(&prune.stderr);
    assert!(prune.status.success(), "{said}");
    assert!(said.contains("are locked, until") && said.contains("retention: extended"), "{said}");
    let vandal = e.s3(&maintenance);
    for k in e.keys() {
        vandal.run(vandal.client.delete_object().bucket(&e.bucket).key(e.full(&k)).send()).unwrap();
    }
    assert!(e.keys().is_empty());
    let wipe_history = vandal.run(
        vandal
            .client
            .delete_object()
            .bucket(&e.bucket)
            .key(e.full(&targets[0]))
            .version_id(version_of(&targets[0]))
            .send(),
    );
    assert_eq!(code(wipe_history), "AccessDenied", "no role deletes a version");
    let gone = e.cairn(&backup, &["snapshots"]);
    assert_eq!(gone.status.code(), Some(10), "the repository looks gone now (exit 10: no repository there)");

    // The way back: the repository as it was before the attack.
    let as_of = before_attack.to_rfc3339();
    let past = snapshots(&e.ok(&maintenance, &["snapshots", "--json", "--as-of", &as_of]));
    assert_eq!(past, snaps, "--as-of lists every snapshot from before the attack");
    let ls = e.ok(&maintenance, &["ls", &snaps[0].0[..8], "--as-of", &as_of]);
    assert!(ls.contains("/sub/small"), "{ls}");
    e.ok(&maintenance, &["check", "--read-data", "--as-of", &as_of]);
    for (i, (id, path)) in snaps.iter().enumerate() {
        let t = e.path(&format!("past-{i}"));
        e.ok(&maintenance, &["restore", &id[..8], "--target", t.to_str().unwrap(), "--as-of", &as_of]);
        assert_same_tree(Path::new(path), &restored(&t, Path::new(path)));
    }
    let mut past_drill_args = drill.to_vec();
    past_drill_args.extend(["--as-of", as_of.as_str()]);
    let past_drill = e.ok(&maintenance, &past_drill_args);
    let report: serde_json::Value = serde_json::from_str(&past_drill).unwrap();
    assert_eq!(report["verdict"]["result"], "pass", "{past_drill}");
    assert!(report["integrity"]["files_checked"].as_u64().unwrap() >= 3, "{past_drill}");
    assert_eq!(report["evidence"]["status"], "unsigned", "the past cannot be signed into");
    // Writes to the past are refused.
    let write = e.cairn(&maintenance, &["backup", src1.to_str().unwrap()]);
    assert!(!write.status.success());

    // And undelete writes the lost objects back as new ones.
    e.ok(&maintenance, &["repair", "undelete", "--as-of", &as_of]);
    assert_eq!(snapshots(&e.ok(&backup, &["snapshots", "--json"])), snaps);
    e.ok(&backup, &["check", "--read-data"]);
    let t = e.path("after-undelete");
    e.ok(&backup, &["restore", &snaps[1].0[..8], "--target", t.to_str().unwrap()]);
    assert_same_tree(&src2, &restored(&t, &src2));
}

#[test]
fn each_role_may_do_what_storage_md_says_and_the_retention_step_extends_only_what_is_due() {
    let e = Scene::new(true);
    let (backup, maintenance, auditor) = (e.backup.clone(), e.maintenance.clone(), e.auditor.clone());
    e.ok(
        &maintenance,
        &["init", "--immutable", "30d", "--kdf-memory-kib", "19456", "--chunk-sizes", "16384,65536,262144"],
    );
    let src = e.path("src");
    make_tree(&src, 7);
    e.ok(&backup, &["backup", src.to_str().unwrap()]);
    let keys = e.keys();
    let key = |dir: &str| e.full(keys.iter().find(|k| k.starts_with(dir)).unwrap());

    // The auditor reads the evidence and the config, and nothing else.
    let a = e.s3(&auditor);
    let get = |s3: &S3, k: &str| code(s3.run(s3.client.get_object().bucket(&e.bucket).key(k).send()));
    assert_eq!(get(&a, &key("evidence/records/")), "ok");
    assert_eq!(get(&a, &e.full("config")), "ok");
    for dir in ["keys/", "data/", "snapshots/", "index/"] {
        assert_eq!(get(&a, &key(dir)), "AccessDenied", "the auditor reads {dir}");
    }
    let list =
        |s3: &S3, prefix: &str| code(s3.run(s3.client.list_objects_v2().bucket(&e.bucket).prefix(prefix).send()));
    assert_eq!(list(&a, &format!("{PREFIX}/evidence/")), "ok");
    assert_eq!(list(&a, &format!("{PREFIX}/")), "AccessDenied");
    let put = |s3: &S3, k: &str| {
        code(
            s3.run(
                s3.client
                    .put_object()
                    .bucket(&e.bucket)
                    .key(k)
                    .if_none_match("*")
                    .body(ByteStream::from_static(b"x"))
                    .send(),
            ),
        )
    };
    assert_eq!(put(&a, &e.full("evidence/records/999999999999")), "AccessDenied");
    let del = |s3: &S3, k: &str| code(s3.run(s3.client.delete_object().bucket(&e.bucket).key(k).send()));
    assert_eq!(del(&a, &key("evidence/records/")), "AccessDenied");
    let out = e.cairn(&auditor, &["snapshots"]);
    assert_eq!(out.status.code(), Some(1), "the auditor cannot open the repository: {}", text(&out.stderr));

    // The backup host writes new objects, and locks only; not the
    // maintenance log, not the past.
    let b = e.s3(&backup);
    assert_eq!(put(&b, &e.full("maintenance/retention/000000000000")), "AccessDenied");
    assert_eq!(put(&b, &e.full("snapshots/new")), "ok");
    assert_eq!(del(&b, &e.full("locks/gone")), "ok");
    let past = e.cairn(&backup, &["snapshots", "--as-of", &Utc::now().to_rfc3339()]);
    assert!(text(&past.stderr).contains("AccessDenied"), "{}", text(&past.stderr));

    // The retention step: nothing is due right after a backup...
    let dry: serde_json::Value =
        serde_json::from_str(&e.ok(&maintenance, &["retention", "extend", "--dry-run", "--json"])).unwrap();
    let objects = dry["report"]["objects"].as_u64().unwrap();
    assert!(objects >= keys.len() as u64, "{dry}");
    assert_eq!(dry["report"]["extended"], 0, "{dry}");
    // ...and everything is, ten days on (its lock then ends within 30 + 7
    // days). The pass lists after the storage's clock has left the second
    // of the last write, so it surely sees every object.
    e.now_on_the_storage();
    let later = (Utc::now() + chrono::Duration::days(10)).to_rfc3339();
    let run: serde_json::Value =
        serde_json::from_str(&e.ok(&maintenance, &["retention", "extend", "--at", &later, "--json"])).unwrap();
    assert_eq!(run["report"]["extended"], objects, "{run}");
    let until: DateTime<Utc> = serde_json::from_value(run["report"]["until"].clone()).unwrap();
    let admin = e.s3(&e.admin);
    for k in e.keys() {
        let h = admin.run(admin.client.head_object().bucket(&e.bucket).key(e.full(&k)).send()).unwrap();
        let got = h.object_lock_retain_until_date().map(to_chrono);
        if k.starts_with("maintenance/retention/") {
            continue; // the log record of this pass, written after it
        }
        assert_eq!(got, Some(until), "{k}");
    }
    // The pass is in the log: run again at the same time, and only the log
    // record it wrote after its listing is due (it never saw that one).
    let again: serde_json::Value =
        serde_json::from_str(&e.ok(&maintenance, &["retention", "extend", "--at", &later, "--json"])).unwrap();
    assert_eq!(again["report"]["extended"], 1, "{again}");
    assert_eq!(again["report"]["objects"], objects + 1, "{again}");
    assert_eq!(again["report"]["passes_before"], 1, "{again}");
}

#[test]
fn init_immutable_refuses_a_bucket_without_object_lock() {
    let e = Scene::new(false);
    let out = e.cairn(&e.admin, &["init", "--immutable", "30d", "--kdf-memory-kib", "19456"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no S3 Object Lock") && err.contains("--object-lock-enabled-for-bucket"), "{err}");
    assert!(e.keys().is_empty(), "nothing was written");
    // Without --immutable the same bucket takes a repository.
    e.ok(&e.admin, &["init", "--kdf-memory-kib", "19456"]);
}

#[test]
fn a_policys_maintenance_profile_runs_its_forget_as_the_maintenance_host_and_its_backups_as_the_backup_host() {
    let e = Scene::new(false);
    e.ok(&e.admin, &["init", "--kdf-memory-kib", "19456", "--chunk-sizes", "16384,65536,262144"]);
    // One host, both credentials: the default profile is the backup
    // host's, `cairn-maintenance` the maintenance host's.
    let aws = e.path("aws");
    std::fs::create_dir(&aws).unwrap();
    std::fs::write(
        aws.join("credentials"),
        format!(
            "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n\n\
             [cairn-maintenance]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            e.backup.key_id, e.backup.secret, e.maintenance.key_id, e.maintenance.secret
        ),
    )
    .unwrap();
    std::fs::write(aws.join("config"), "").unwrap();
    let src = e.path("src");
    make_tree(&src, 3);
    let policies = e.path("policies");
    std::fs::create_dir(&policies).unwrap();
    let policy = |name: &str, s3: &str| {
        let body = format!(
            "name = \"{name}\"\n[source]\npaths = [\"{}\"]\n[repository]\nurl = \"s3://{}/{PREFIX}\"\n\
             [repository.s3]\n{s3}\n[retention]\nkeep_last = 1\n",
            src.display(),
            e.bucket
        );
        std::fs::write(policies.join(format!("{name}.toml")), body).unwrap();
    };
    policy("both-roles", "maintenance_profile = \"cairn-maintenance\"");
    policy("backup-role-only", "");
    let run = |args: &[&str]| {
        let mut c = e.command(&e.backup);
        c.env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("AWS_SHARED_CREDENTIALS_FILE", aws.join("credentials"))
            .env("AWS_CONFIG_FILE", aws.join("config"))
            .args(args)
            .args(["--policies", policies.to_str().unwrap()]);
        c.output().unwrap()
    };
    for i in 0..2 {
        std::fs::write(src.join("changing"), format!("version {i}")).unwrap();
        let out = run(&["backup", "--policy", "both-roles"]);
        assert!(out.status.success(), "a backup with the backup host's credential: {}", text(&out.stderr));
    }
    // Without a maintenance profile, the forget runs with the backup
    // host's credential, and fails before it deletes anything.
    let out = run(&["forget", "--policy", "backup-role-only"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("s3:DeleteObject") && err.contains("maintenance host"), "{err}");
    assert_eq!(e.keys().iter().filter(|k| k.starts_with("snapshots/")).count(), 2);
    // With it, the same forget deletes as the maintenance host.
    let out = run(&["forget", "--policy", "both-roles"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(e.keys().iter().filter(|k| k.starts_with("snapshots/")).count(), 1);
}
