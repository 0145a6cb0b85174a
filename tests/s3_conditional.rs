//! Conditional writes on Garage, as `docs/STORAGE.md` states them:
//! Garage 2.5.0 ignores `If-None-Match: *` (on `PutObject` and on
//! `CompleteMultipartUpload`) and replaces the object, so `init` records
//! that the storage does not honour it, and cairn then asks whether a key
//! exists before writing it (HEAD before PUT). Either way cairn never
//! replaces an object, and a refused write names the key.
//!
//! One test in this file: it sets the AWS credentials in the process
//! environment, which the SDK's credential chain reads.

mod garage;

use std::sync::Arc;

use cairn::backend::{Backend, S3Backend, S3Options, WritePolicy};
use cairn::repo::{InitOptions, Repository};

#[test]
fn garage_ignores_if_none_match_and_cairn_still_never_replaces_an_object() {
    let g = garage::Garage::start();
    std::env::set_var("AWS_ACCESS_KEY_ID", &g.key_id);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", &g.secret);
    std::env::remove_var("AWS_PROFILE");
    let backend = |prefix: &str| {
        let mut o = S3Options::from_url(&g.url(prefix)).unwrap();
        o.endpoint = Some(g.endpoint());
        o.region = Some("garage".into());
        o.multipart_threshold = 6 << 20;
        o.part_size = 5 << 20;
        S3Backend::new(o).unwrap()
    };

    // The probe `init` runs: Garage does not refuse the conditional write.
    let b = backend("probe");
    assert!(!b.probe_conditional_put().unwrap(), "Garage now honours If-None-Match: update docs/STORAGE.md");
    assert!(b.list("").unwrap().is_empty(), "the probe leaves nothing behind");

    // Trusting the header on Garage would replace objects (what the probe found):
    b.set_write_policy(&WritePolicy { conditional_put: true, object_lock: None });
    b.put("trusting/x", b"first").unwrap();
    b.put("trusting/x", b"second").unwrap();
    assert_eq!(b.get("trusting/x").unwrap(), b"second", "Garage replaced the object despite If-None-Match");
    let big = |seed: u8| -> Vec<u8> { (0..7u32 << 20).map(|i| (i as u8).wrapping_mul(seed)).collect() };
    b.put("trusting/big", &big(3)).unwrap();
    b.put("trusting/big", &big(5)).unwrap();
    assert!(b.get("trusting/big").unwrap() == big(5), "CompleteMultipartUpload ignores If-None-Match too");

    // What cairn does on Garage (the policy `init` records): HEAD before PUT.
    b.set_write_policy(&WritePolicy { conditional_put: false, object_lock: None });
    b.put("data/ab/x", b"first").unwrap();
    b.put("data/ab/x", b"first").unwrap(); // a retry of the same object: success
    let e = b.put("data/ab/x", b"other").unwrap_err();
    assert!(e.is_already_exists(), "{e}");
    assert!(e.to_string().contains(&format!("s3://{}/probe/data/ab/x", g.bucket)), "names the key: {e}");
    assert_eq!(b.get("data/ab/x").unwrap(), b"first");
    b.put("data/cd/big", &big(3)).unwrap();
    assert!(b.put("data/cd/big", &big(5)).unwrap_err().is_already_exists());
    assert!(b.get("data/cd/big").unwrap() == big(3));
    // An object named by its hash goes up without the HEAD: what is under
    // its name is these bytes, so a second write replaces nothing.
    let (heads, puts) = (g.requests_seen("HeadObject"), g.requests_seen("PutObject"));
    let packed = big(7);
    let name = format!("data/ef/{}", blake3::hash(&packed).to_hex());
    b.put_data_pack(&name, &packed).unwrap();
    b.put_data_pack(&name, &packed).unwrap(); // a retry of the same pack
    let index = format!("index/{}", blake3::hash(b"an index file").to_hex());
    b.put_hashed(&index, b"an index file").unwrap();
    assert_eq!(g.requests("HeadObject"), heads, "a HEAD before writing an object named by its hash");
    assert!(g.requests("PutObject") > puts, "the writes reached Garage");
    assert!(b.get(&name).unwrap() == packed && b.get(&index).unwrap() == b"an index file");
    // So does an evidence record that a listing under its lock did not find.
    let puts = g.requests_seen("PutObject");
    b.put_known_absent("evidence/records/k/00000000000000000001", b"a record").unwrap();
    assert_eq!(g.requests("HeadObject"), heads, "a HEAD before writing a key its writer knows is new");
    assert_eq!(g.requests("PutObject"), puts + 1, "the record went up in one request");
    assert_eq!(b.get("evidence/records/k/00000000000000000001").unwrap(), b"a record");
    // Locks are the objects that change, and only they.
    b.put_mutable("locks/l", b"1").unwrap();
    b.put_mutable("locks/l", b"2").unwrap();
    assert_eq!(b.get("locks/l").unwrap(), b"2");
    assert!(b.put_mutable("config", b"x").is_err());
    let listed = b.list("data/").unwrap();
    assert!(listed.iter().all(|o| o.modified.is_some()), "listings carry store times: {listed:?}");

    // `init` records what it found, and every later open writes that way.
    let repo_backend: Arc<dyn Backend> = Arc::new(backend("repo"));
    let opts = InitOptions {
        kdf: cairn::crypto::KdfParams { memory_kib: cairn::crypto::KdfParams::MIN_MEMORY_KIB, ..Default::default() },
        ..Default::default()
    };
    Repository::init(repo_backend.clone(), b"pw", opts).unwrap();
    let repo = Repository::open(Arc::new(backend("repo")), b"pw").unwrap();
    assert_eq!(repo.config().storage.conditional_put, Some(false));
    assert!(repo.backend().put("config", b"not the config").unwrap_err().is_already_exists());
}
