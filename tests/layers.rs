//! The import check: dependencies between cairn's modules point one way,
//! bottom up, as `docs/ARCHITECTURE.md` draws them.
//!
//! It reads every source file of the library (following the `mod`
//! declarations from `src/lib.rs`, `#[path]` included), finds every path
//! that starts with `crate::`, `super::` or `self::` (in `use` items, in
//! expressions, in types; comments and string literals are skipped), and
//! resolves it to the module it names. Then:
//!
//! - every top-level module has a place in [`LAYERS`], and an import never
//!   points to a higher layer, unless it is one of the documented
//!   [`UPWARD`] exceptions;
//! - there is no circle between top-level modules;
//! - inside each top-level module, there is no circle between its files
//!   and folders (the module's own `mod.rs`, which declares and re-exports
//!   them, is left out).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom up. A module may use modules of its own layer or of
/// lower ones.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "foundation",
        &[
            "error",
            "id",
            "crypto",
            "text",
            "host",
            "pool",
            "process",
            "chunk",
            "duration",
            "page",
            "private",
            "failpoint",
        ],
    ),
    ("storage", &["backend"]),
    ("format", &["repo"]),
    ("engine", &["fsmeta", "backup", "restore", "check", "prune", "browse", "find", "copy"]),
    ("records", &["evidence", "state"]),
    ("policies", &["policy"]),
    ("drill engine", &["drill"]),
    ("jobs", &["jobs"]),
    ("views", &["status", "report", "daemon", "mount"]),
    ("command line", &["cli"]),
];

/// Imports that point upward on purpose: (from, to). Each is named, with
/// its reason, in `docs/ARCHITECTURE.md`.
const UPWARD: &[(&str, &str)] = &[];

/// Imports between the files of one module that close a circle, on
/// purpose: (module, from, to). Each is named, with its reason, in
/// `docs/ARCHITECTURE.md`.
const INNER_CIRCLES: &[(&str, &str, &str)] = &[];

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    PathSep,
    Open,
    Close,
    Comma,
    Semi,
    Pound,
    Other,
}

/// Tokens of a Rust source file, without comments, literals and lifetimes.
fn tokens(src: &str) -> Vec<Tok> {
    let c: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    while i < c.len() {
        let ch = c[i];
        let next = c.get(i + 1).copied();
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && next == Some('*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if ch == '"' {
            i += 1;
            while i < c.len() && c[i] != '"' {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push(Tok::Other);
        } else if ch == '\'' {
            // A char literal, or a lifetime / label.
            if next == Some('\\') {
                i += 2;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if c.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
                while i < c.len() && ident(c[i]) {
                    i += 1;
                }
            }
            out.push(Tok::Other);
        } else if ident(ch) {
            let start = i;
            while i < c.len() && ident(c[i]) {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            // Raw strings (r"…", r#"…"#, br"…") and byte strings (b"…").
            let raw = (word == "r" || word == "br") && matches!(c.get(i), Some('"') | Some('#'));
            if raw {
                let mut hashes = 0;
                while c.get(i) == Some(&'#') {
                    hashes += 1;
                    i += 1;
                }
                i += 1; // the opening quote
                loop {
                    if i >= c.len() {
                        break;
                    }
                    if c[i] == '"' && (0..hashes).all(|k| c.get(i + 1 + k) == Some(&'#')) {
                        i += 1 + hashes;
                        break;
                    }
                    i += 1;
                }
                out.push(Tok::Other);
            } else if word == "b" && c.get(i) == Some(&'\'') {
                i += 1;
                while i < c.len() && c[i] != '\'' {
                    i += if c[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
                out.push(Tok::Other);
            } else if word != "b" || c.get(i) != Some(&'"') {
                out.push(Tok::Ident(word));
            }
        } else if ch == ':' && next == Some(':') {
            out.push(Tok::PathSep);
            i += 2;
        } else {
            out.push(match ch {
                '{' => Tok::Open,
                '}' => Tok::Close,
                ',' => Tok::Comma,
                ';' => Tok::Semi,
                '#' => Tok::Pound,
                _ => Tok::Other,
            });
            i += 1;
        }
    }
    out
}

/// One source file and the module it is.
struct File {
    path: PathBuf,
    module: Vec<String>,
}

/// The files of the library, following `mod` declarations from `lib.rs`.
fn files(src: &Path) -> Vec<File> {
    let mut out = Vec::new();
    let mut todo = vec![File { path: src.join("lib.rs"), module: Vec::new() }];
    while let Some(f) = todo.pop() {
        let text = std::fs::read_to_string(&f.path).unwrap_or_else(|e| panic!("{}: {e}", f.path.display()));
        let dir = f.path.parent().unwrap().to_path_buf();
        let stem = f.path.file_stem().unwrap().to_string_lossy().to_string();
        // Where `mod x;` looks for x: beside a mod.rs or lib.rs, else in a folder named after the file.
        let base = if stem == "mod" || stem == "lib" { dir.clone() } else { dir.join(&stem) };
        let mut pending_path: Option<String> = None;
        for line in text.lines() {
            let l = line.trim();
            if let Some(rest) = l.strip_prefix("#[path = \"") {
                pending_path = rest.split('"').next().map(String::from);
                continue;
            }
            let decl = l.trim_start_matches("pub(crate) ").trim_start_matches("pub(super) ").trim_start_matches("pub ");
            if let Some(name) = decl.strip_prefix("mod ").and_then(|r| r.strip_suffix(';')) {
                let path = match pending_path.take() {
                    Some(p) => dir.join(p),
                    None if base.join(format!("{name}.rs")).exists() => base.join(format!("{name}.rs")),
                    None => base.join(name).join("mod.rs"),
                };
                let mut module = f.module.clone();
                module.push(name.to_string());
                todo.push(File { path, module });
            } else if !l.starts_with("#[") {
                pending_path = None;
            }
        }
        out.push(f);
    }
    out
}

/// Every module path (as segments from the crate root) that `toks`
/// names, for a file that is module `module`. Inline `mod x { … }`
/// blocks are followed, so `super::` resolves as the compiler does.
fn named_paths(toks: &[Tok], module: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    // Inline modules: (name, brace depth at which it was opened).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            Tok::Open => depth += 1,
            Tok::Close => {
                depth -= 1;
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
            }
            Tok::Ident(w) if w == "mod" => {
                if let (Some(Tok::Ident(name)), Some(Tok::Open)) = (toks.get(i + 1), toks.get(i + 2)) {
                    inline.push((name.clone(), depth));
                    depth += 1;
                    i += 3;
                    continue;
                }
            }
            Tok::Ident(w) if (w == "crate" || w == "super" || w == "self") => {
                let starts_path = toks.get(i + 1) == Some(&Tok::PathSep) && (i == 0 || toks[i - 1] != Tok::PathSep);
                if starts_path {
                    let mut here: Vec<String> = module.to_vec();
                    here.extend(inline.iter().map(|(n, _)| n.clone()));
                    let (paths, next) = path_tree(toks, i, here);
                    out.extend(paths);
                    i = next;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Reads the path (or use tree) starting at `toks[i]`, resolving leading
/// `crate`, `super` and `self` against `here`; returns the paths and the
/// index after it.
fn path_tree(toks: &[Tok], mut i: usize, here: Vec<String>) -> (Vec<Vec<String>>, usize) {
    let mut prefix = here.clone();
    let mut first = true;
    loop {
        match toks.get(i) {
            Some(Tok::Ident(w)) if first && w == "crate" => prefix.clear(),
            Some(Tok::Ident(w)) if w == "super" && (first || prefix.len() < here.len()) => {
                prefix.pop();
            }
            Some(Tok::Ident(w)) if first && w == "self" => {}
            Some(Tok::Ident(w)) => prefix.push(w.clone()),
            Some(Tok::Open) => {
                // A use group: every item extends the prefix.
                let mut paths = Vec::new();
                i += 1;
                loop {
                    match toks.get(i) {
                        None => return (paths, i),
                        Some(Tok::Close) => return (paths, i + 1),
                        Some(Tok::Comma) => i += 1,
                        Some(Tok::Ident(w)) if w == "self" => {
                            paths.push(prefix.clone());
                            i += 1;
                        }
                        Some(Tok::Ident(_)) | Some(Tok::Open) => {
                            let (sub, next) = group_item(toks, i, prefix.clone());
                            paths.extend(sub);
                            i = next;
                        }
                        Some(_) => i += 1,
                    }
                }
            }
            _ => return (vec![prefix], i),
        }
        first = false;
        i += 1;
        if toks.get(i) != Some(&Tok::PathSep) {
            return (vec![prefix], i);
        }
        i += 1;
    }
}

/// One item of a use group, relative to `prefix`.
fn group_item(toks: &[Tok], mut i: usize, mut prefix: Vec<String>) -> (Vec<Vec<String>>, usize) {
    loop {
        match toks.get(i) {
            Some(Tok::Ident(w)) if w == "as" => {
                // `x as y`: skip the alias.
                return (vec![prefix], i + 2);
            }
            Some(Tok::Ident(w)) => prefix.push(w.clone()),
            Some(Tok::Open) => {
                let mut paths = Vec::new();
                i += 1;
                loop {
                    match toks.get(i) {
                        None => return (paths, i),
                        Some(Tok::Close) => return (paths, i + 1),
                        Some(Tok::Comma) => i += 1,
                        Some(Tok::Ident(w)) if w == "self" => {
                            paths.push(prefix.clone());
                            i += 1;
                        }
                        Some(Tok::Ident(_)) | Some(Tok::Open) => {
                            let (sub, next) = group_item(toks, i, prefix.clone());
                            paths.extend(sub);
                            i = next;
                        }
                        Some(_) => i += 1,
                    }
                }
            }
            _ => return (vec![prefix], i),
        }
        i += 1;
        if toks.get(i) != Some(&Tok::PathSep) {
            return (vec![prefix], i);
        }
        i += 1;
    }
}

/// The module graph: top-level edges, and edges between the children of
/// each top-level module. Each edge keeps one file that makes it.
struct Graph {
    top: BTreeMap<(String, String), String>,
    inner: BTreeMap<String, BTreeMap<(String, String), String>>,
    modules: BTreeSet<String>,
}

fn graph() -> Graph {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let all = files(&root);
    let modules: BTreeSet<String> = all.iter().filter_map(|f| f.module.first().cloned()).collect();
    // The children of each top-level module.
    let mut children: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &all {
        if f.module.len() >= 2 {
            children.entry(f.module[0].clone()).or_default().insert(f.module[1].clone());
        }
    }
    let mut g = Graph { top: BTreeMap::new(), inner: BTreeMap::new(), modules: modules.clone() };
    for f in &all {
        let Some(from) = f.module.first() else { continue };
        let text = std::fs::read_to_string(&f.path).unwrap();
        let shown = f.path.strip_prefix(&root).unwrap().display().to_string();
        for p in named_paths(&tokens(&text), &f.module) {
            let Some(first) = p.first() else { continue };
            // The crate root re-exports `Error`, `Result` and `Id`, and holds `VERSION`.
            let to = match first.as_str() {
                "Error" | "Result" => "error".to_string(),
                "Id" => "id".to_string(),
                other => other.to_string(),
            };
            if !modules.contains(&to) {
                continue;
            }
            if &to != from {
                g.top.entry((from.clone(), to)).or_insert_with(|| shown.clone());
                continue;
            }
            // Inside one top-level module: from child to child.
            let (Some(a), Some(b)) = (f.module.get(1), p.get(1)) else { continue };
            if a != b && children.get(from).is_some_and(|c| c.contains(b)) {
                g.inner.entry(from.clone()).or_default().entry((a.clone(), b.clone())).or_insert_with(|| shown.clone());
            }
        }
    }
    g
}

/// A circle in `edges`, if there is one, as the list of its nodes.
fn circle(edges: &BTreeMap<(String, String), String>) -> Option<Vec<String>> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (a, b) in edges.keys() {
        next.entry(a).or_default().push(b);
    }
    // 0: unvisited, 1: on the current path, 2: done.
    fn visit<'a>(
        n: &'a str,
        next: &BTreeMap<&'a str, Vec<&'a str>>,
        mark: &mut BTreeMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match mark.get(n) {
            Some(2) => return None,
            Some(1) => {
                let at = path.iter().position(|p| *p == n).unwrap();
                let mut c: Vec<String> = path[at..].iter().map(|s| s.to_string()).collect();
                c.push(n.to_string());
                return Some(c);
            }
            _ => {}
        }
        mark.insert(n, 1);
        path.push(n);
        for m in next.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, next, mark, path) {
                return Some(c);
            }
        }
        path.pop();
        mark.insert(n, 2);
        None
    }
    let mut mark = BTreeMap::new();
    let nodes: Vec<&str> = next.keys().copied().collect();
    for n in nodes {
        if let Some(c) = visit(n, &next, &mut mark, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, mods)| mods.contains(&module))
}

#[test]
fn every_module_has_a_layer() {
    let g = graph();
    let missing: Vec<&String> = g.modules.iter().filter(|m| layer_of(m).is_none()).collect();
    assert!(missing.is_empty(), "modules with no place in LAYERS (tests/layers.rs): {missing:?}");
    let gone: Vec<&str> =
        LAYERS.iter().flat_map(|(_, m)| m.iter().copied()).filter(|m| !g.modules.contains(*m)).collect();
    assert!(gone.is_empty(), "LAYERS names modules that do not exist: {gone:?}");
}

#[test]
fn imports_never_point_to_a_higher_layer() {
    let g = graph();
    let mut wrong = Vec::new();
    for ((from, to), file) in &g.top {
        let (Some(a), Some(b)) = (layer_of(from), layer_of(to)) else { continue };
        if b > a && !UPWARD.contains(&(from.as_str(), to.as_str())) {
            wrong.push(format!("{file}: `{from}` ({}) uses `{to}` ({})", LAYERS[a].0, LAYERS[b].0));
        }
    }
    assert!(wrong.is_empty(), "imports pointing upward:\n{}", wrong.join("\n"));
    for (from, to) in UPWARD {
        assert!(
            g.top.contains_key(&(from.to_string(), to.to_string())),
            "the exception {from} → {to} is not used any more: remove it from UPWARD and docs/ARCHITECTURE.md"
        );
    }
}

#[test]
fn the_upward_exceptions_are_documented() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ARCHITECTURE.md")).unwrap();
    for (from, to) in UPWARD {
        let named = format!("`{from}` → `{to}`");
        assert!(doc.contains(&named), "docs/ARCHITECTURE.md does not name the exception {named}");
    }
    for (m, from, to) in INNER_CIRCLES {
        let named = format!("`{m}/{from}` → `{m}/{to}`");
        assert!(doc.contains(&named), "docs/ARCHITECTURE.md does not name the exception {named}");
    }
}

#[test]
fn no_circle_between_top_level_modules() {
    let g = graph();
    if let Some(c) = circle(&g.top) {
        let files: Vec<String> =
            c.windows(2).map(|w| format!("{} → {}: {}", w[0], w[1], g.top[&(w[0].clone(), w[1].clone())])).collect();
        panic!("a circle between modules: {}\n{}", c.join(" → "), files.join("\n"));
    }
}

#[test]
fn no_circle_inside_a_module() {
    let g = graph();
    let mut found = Vec::new();
    for (m, from, to) in INNER_CIRCLES {
        let edge = (from.to_string(), to.to_string());
        assert!(
            g.inner.get(*m).is_some_and(|e| e.contains_key(&edge)),
            "the exception {m}/{from} → {m}/{to} is not used any more: remove it from INNER_CIRCLES and \
             docs/ARCHITECTURE.md"
        );
    }
    for (m, edges) in &g.inner {
        let mut edges = edges.clone();
        edges.retain(|(a, b), _| !INNER_CIRCLES.contains(&(m.as_str(), a.as_str(), b.as_str())));
        if let Some(c) = circle(&edges) {
            let files: Vec<String> = c
                .windows(2)
                .map(|w| format!("  {} → {}: {}", w[0], w[1], edges[&(w[0].clone(), w[1].clone())]))
                .collect();
            found.push(format!("inside `{m}`: {}\n{}", c.join(" → "), files.join("\n")));
        }
    }
    assert!(found.is_empty(), "circles:\n{}", found.join("\n"));
}

/// The check itself finds what it must: an upward `use`, a grouped one, a
/// `super::` chain that leaves the module, and no path in a comment or a
/// string.
#[test]
fn the_check_reads_paths_as_the_compiler_does() {
    let src = r##"
        //! crate::cli in a comment
        use crate::{backend::Backend, repo::{self, Repository}};
        use super::super::policy::Policy;
        mod tests {
            use super::*;
            fn f() { let _ = "crate::daemon"; let _ = r#"crate::report"#; crate::jobs::run(); }
        }
        /* crate::status */
        fn g<'a>(x: &'a str) -> char { let _ = crate::Id::random(); 'x' }
    "##;
    let module = vec!["drill".to_string(), "runner".to_string()];
    let paths = named_paths(&tokens(src), &module);
    let firsts: BTreeSet<String> = paths.iter().filter_map(|p| p.first().cloned()).collect();
    let want: BTreeSet<String> =
        ["backend", "repo", "policy", "drill", "jobs", "Id"].iter().map(|s| s.to_string()).collect();
    assert_eq!(firsts, want, "{paths:?}");
    assert!(paths.contains(&vec!["repo".to_string(), "Repository".to_string()]), "{paths:?}");
    assert!(paths.contains(&vec!["drill".to_string(), "runner".to_string()]), "{paths:?}");
    let mut edges = BTreeMap::new();
    edges.insert(("a".to_string(), "b".to_string()), String::new());
    assert!(circle(&edges).is_none());
    edges.insert(("b".to_string(), "a".to_string()), String::new());
    assert_eq!(circle(&edges).unwrap(), ["a", "b", "a"]);
}
