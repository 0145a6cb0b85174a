//! `cairn find`, through the binary: which snapshots hold a path, and a
//! walk that reads only the trees a pattern can match in.

mod common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

use cairn::backend::LocalBackend;
use cairn::repo::{pack_key, Repository};
use common::{Env, PASSWORD};

/// `data/etc/nginx/sites-enabled/{shop,blog}`, `data/etc/nginx/nginx.conf`,
/// `data/home/{alice,bob}/notes.txt`.
fn make_tree(data: &Path) {
    for d in ["etc/nginx/sites-enabled", "etc/ssh", "home/alice", "home/bob"] {
        std::fs::create_dir_all(data.join(d)).unwrap();
    }
    std::fs::write(data.join("etc/nginx/sites-enabled/shop"), b"server shop;\n").unwrap();
    std::fs::write(data.join("etc/nginx/sites-enabled/blog"), b"server blog;\n").unwrap();
    std::fs::write(data.join("etc/nginx/nginx.conf"), b"http {}\n").unwrap();
    std::fs::write(data.join("etc/ssh/sshd.conf"), b"Port 22\n").unwrap();
    std::fs::write(data.join("home/alice/notes.txt"), b"alice\n").unwrap();
    std::fs::write(data.join("home/bob/notes.txt"), b"bob\n").unwrap();
}

fn snapshot_id(v: &serde_json::Value) -> String {
    v["snapshot"].as_str().unwrap().to_string()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Lines of `cairn find` as (short id, path).
fn hits(out: &str) -> Vec<(String, String)> {
    out.lines()
        .map(|l| {
            let cols: Vec<&str> = l.split("  ").filter(|c| !c.is_empty()).collect();
            (cols[0].to_string(), cols.last().unwrap().to_string())
        })
        .collect()
}

#[test]
fn find_names_every_snapshot_that_still_has_the_file_newest_first() {
    let env = Env::new();
    let data = env.path("data");
    make_tree(&data);
    let shop = data.join("etc/nginx/sites-enabled/shop");
    let s1 = snapshot_id(&env.backup_json(&[&data], &[]));
    std::fs::remove_file(&shop).unwrap();
    let s2 = snapshot_id(&env.backup_json(&[&data], &[]));
    std::fs::write(&shop, b"server shop; # back, and longer\n").unwrap();
    let s3 = snapshot_id(&env.backup_json(&[&data], &[]));
    let shop_s = shop.to_str().unwrap();

    let out = env.ok(&["find", shop_s]);
    let short = |s: &str| s[..8].to_string();
    assert_eq!(hits(&out), [(short(&s3), shop_s.to_string()), (short(&s1), shop_s.to_string())], "{out}");
    assert!(!out.contains(&short(&s2)), "the snapshot without the file is not named: {out}");
    assert!(out.lines().next().unwrap().contains("32 B"), "the newest copy's size: {out}");
    assert!(out.lines().nth(1).unwrap().contains("13 B"), "the oldest copy's size: {out}");

    // A name pattern, a regular expression, and the selections.
    assert_eq!(hits(&env.ok(&["find", "shop"])).len(), 2);
    let re = format!("^{}$", regex_syntax::escape(shop_s));
    assert_eq!(hits(&env.ok(&["find", "--regex", &re])).len(), 2);
    assert_eq!(hits(&env.ok(&["find", "shop", "--newest", "1"])), [(short(&s3), shop_s.to_string())]);
    assert_eq!(hits(&env.ok(&["find", "shop", "--newest", "2"])), [(short(&s3), shop_s.to_string())]);
    assert_eq!(hits(&env.ok(&["find", "shop", "--snapshot", &s1[..10]])), [(short(&s1), shop_s.to_string())]);
    assert_eq!(hits(&env.ok(&["find", "shop", "--snapshot", "latest"])), [(short(&s3), shop_s.to_string())]);
    assert!(env.ok(&["find", "shop", "--snapshot", &s2]).is_empty());

    // Several patterns; results in path order.
    let out = env.ok(&["find", "--snapshot", &s3, "*.conf", &format!("{}/home/*/notes.txt", data.display())]);
    let paths: Vec<String> = hits(&out).into_iter().map(|h| h.1).collect();
    let expect: Vec<String> =
        ["etc/nginx/nginx.conf", "etc/ssh/sshd.conf", "home/alice/notes.txt", "home/bob/notes.txt"]
            .iter()
            .map(|p| data.join(p).display().to_string())
            .collect();
    assert_eq!(paths, expect);

    // JSON.
    let j: serde_json::Value = serde_json::from_str(&env.ok(&["find", "--json", shop_s])).unwrap();
    let a = j.as_array().unwrap();
    assert_eq!(a.len(), 2);
    assert_eq!(a[0]["snapshot"], s3.as_str());
    assert_eq!(a[0]["path"], shop_s);
    assert_eq!(a[0]["type"], "file");
    assert_eq!(a[0]["size"], 32);
    assert!(a[0]["mtime"].as_str().unwrap().starts_with("20"));
    assert_eq!(a[1]["snapshot"], s1.as_str());

    // Usage errors.
    assert_eq!(env.cairn(&["find"]).status.code(), Some(2), "a pattern is required");
    let bad = env.cairn(&["find", "--regex", "("]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("regular expression `(`"), "{}", stderr(&bad));
    let none = env.cairn(&["find", "x", "--snapshot", "ffffffff"]);
    assert_eq!(none.status.code(), Some(1), "{}", stderr(&none));
}

/// Damages the stored tree of the directory `dir` in the newest snapshot:
/// flips a byte in the middle of its blob, in its pack.
fn damage_tree_of(env: &Env, dir: &Path) {
    let repo = Repository::open(Arc::new(LocalBackend::new(&env.repo)), PASSWORD.as_bytes()).unwrap();
    let (_, snap) = repo.find_snapshot("latest").unwrap();
    let index = repo.load_index().unwrap();
    let node = cairn::repo::tree::lookup(&repo, &index, &snap.tree, dir.to_str().unwrap().as_bytes()).unwrap().unwrap();
    let loc = index.get(&node.subtree.unwrap()).unwrap();
    let pack = env.repo.join(pack_key(&index.pack(loc.pack).id));
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(pack).unwrap();
    let at = loc.offset as u64 + loc.length as u64 / 2;
    let mut b = [0u8];
    f.seek(SeekFrom::Start(at)).unwrap();
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[b[0] ^ 0x55]).unwrap();
}

/// The `N tree(s) read` of the summary and the `get_range` requests of `--stats`.
fn trees_and_range_reads(err: &str) -> (u64, u64) {
    let trees = err
        .lines()
        .find_map(|l| l.split("; ").nth(1).and_then(|t| t.strip_suffix(" tree(s) read")))
        .unwrap_or_else(|| panic!("no summary in {err}"))
        .parse()
        .unwrap();
    let stats: serde_json::Value =
        serde_json::from_str(err.lines().find(|l| l.starts_with("{\"requests\"")).unwrap()).unwrap();
    (trees, stats["requests"]["get_range"].as_u64().unwrap())
}

#[test]
fn find_reads_only_the_trees_on_the_patterns_way_and_shared_ones_once() {
    let env = Env::new();
    let data = env.path("data");
    make_tree(&data);
    env.backup_json(&[&data], &[]);
    // Snapshot 2 differs from 1 under home/ only: its /etc trees are the same objects.
    std::fs::write(data.join("home/alice/notes.txt"), b"alice, changed\n").unwrap();
    env.backup_json(&[&data], &[]);
    damage_tree_of(&env, &data.join("home"));

    let pattern = format!("{}/etc/nginx/**", data.display());
    let o = env.cairn(&["--stats", "find", &pattern]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "the damaged /home is never read: {err}");
    assert!(!err.contains("warning"), "{err}");
    let out = String::from_utf8(o.stdout).unwrap();
    assert_eq!(hits(&out).len(), 2 * 4, "sites-enabled, blog, shop, nginx.conf in each snapshot: {out}");
    // The trees read: the root and one per component of `data` (its
    // ancestors and itself), for each snapshot since they differ there;
    // then etc, nginx and sites-enabled, which both snapshots share, once.
    let above = data.components().count() as u64; // "/" counts as one: the root tree
    let (trees, range_reads) = trees_and_range_reads(&err);
    assert_eq!(trees, 2 * above + 3, "{err}");
    assert_eq!(range_reads, trees, "each tree is one range read of a local repository, and nothing else is: {err}");

    // A name pattern must look everywhere: it meets the damage, says so and exits 3.
    let o = env.cairn(&["find", "notes.txt"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains(&format!("not searched: {}/home", data.display())), "{err}");
    assert!(err.contains("failed authentication"), "{err}");
    let out = String::from_utf8(o.stdout).unwrap();
    assert_eq!(hits(&out).len(), 2, "the first snapshot's notes are still found: {out}");
}
