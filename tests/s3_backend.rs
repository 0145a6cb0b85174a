//! The S3 backend's own operations against a real Garage server: multipart
//! uploads above the threshold, ranged reads, paginated listing past 1000
//! objects, batched deletes, and a storage class on data packs.
//!
//! This file holds a single test because it sets the AWS credentials in the
//! process environment, which the SDK's credential chain reads.

mod garage;

use cairn::backend::{Backend, S3Backend, S3Options};

#[test]
fn multipart_ranges_pagination_and_batched_deletes_work_against_garage() {
    let g = garage::Garage::start();
    std::env::set_var("AWS_ACCESS_KEY_ID", &g.key_id);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", &g.secret);
    std::env::remove_var("AWS_PROFILE");
    let mut o = S3Options::from_url(&g.url("lib")).unwrap();
    o.endpoint = Some(g.endpoint());
    o.region = Some("garage".into());
    o.multipart_threshold = 6 << 20;
    o.part_size = 5 << 20;
    o.storage_class = Some("STANDARD".into());
    let b = S3Backend::new(o).unwrap();
    assert!(b.location().starts_with(&format!("s3://{}/lib at http://127.0.0.1:", g.bucket)));
    // The server's clock comes with every response (its Date header).
    assert_eq!(b.server_time(), None, "no response yet");
    assert!(b.list("nothing/").unwrap().is_empty());
    let server = b.server_time().expect("a response carried the server's clock");
    assert!((server - chrono::Utc::now()).num_seconds().abs() < 60, "Garage on this host keeps its time: {server}");

    // 13 MiB goes up in three parts; it must come back byte for byte.
    let big: Vec<u8> = (0..13u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8).collect();
    b.put("data/ab/big", &big).unwrap();
    assert!(b.get("data/ab/big").unwrap() == big);
    assert_eq!(b.stat("data/ab/big").unwrap(), big.len() as u64);
    let r = b.get_range("data/ab/big", (5 << 20) - 10, 100).unwrap();
    assert_eq!(r, &big[(5 << 20) - 10..(5 << 20) + 90]);
    // A range past the end is an error, not a short read.
    assert!(b.get_range("data/ab/big", big.len() as u64 - 10, 100).is_err());
    // Data packs go up through their own call (the one that sets the
    // storage class, when one is configured) and read back.
    // (named by their hash, as packs are).
    let pack = format!("data/cd/{}", blake3::hash(b"pack bytes").to_hex());
    b.put_data_pack(&pack, b"pack bytes").unwrap();
    assert_eq!(b.get(&pack).unwrap(), b"pack bytes");

    // More than one page of listing.
    let keys: Vec<String> = (0..1010).map(|i| format!("many/{i:05}")).collect();
    std::thread::scope(|s| {
        for chunk in keys.chunks(128) {
            let b = &b;
            s.spawn(move || chunk.iter().for_each(|k| b.put(k, k.as_bytes()).unwrap()));
        }
    });
    let listed = b.list("many/").unwrap();
    assert_eq!(listed.len(), 1010, "pagination lost objects");
    assert_eq!(listed[0].key, "many/00000");
    assert_eq!(listed[1009].size, 10);
    b.delete_many(&keys).unwrap();
    assert!(b.list("many/").unwrap().is_empty(), "batched delete left objects");
    assert!(b.get("many/00001").unwrap_err().is_not_found());
    b.delete("data/ab/big").unwrap();
    assert!(b.stat("data/ab/big").unwrap_err().is_not_found());
}
