//! Dependencies run one way (docs: `../shared/design/style.md`): checked on
//! the source, so that a new `use` that closes a cycle fails here.
//!
//! Imports are read from the code, not matched as text: `crate::a::b`,
//! grouped imports (`use crate::{log, runtime};`, over several lines),
//! paths in expressions (`crate::runtime::process()`), and `super::` paths
//! that climb out of their module to the crate root. Comments are ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn source(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every `.rs` file under `dir` (relative to the crate), subfolders too.
fn files_under(dir: &str) -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let base = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    walk(&base.join(dir), &mut found);
    let mut out: Vec<String> = found
        .iter()
        .map(|p| {
            p.strip_prefix(base)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/")
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no Rust files under {dir}");
    out
}

/// The source without comments (line comments, doc comments and block
/// comments); string contents are kept, which only over-reports.
fn code(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let b = src.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

fn ident_at(s: &str) -> Option<&str> {
    let s = s.trim_start();
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    (end > 0).then(|| &s[..end])
}

/// The first path segment of every item of the brace group that starts
/// right after `{` at the beginning of `s` (nested groups are skipped).
fn group_heads(s: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 1;
    let mut item = String::new();
    for c in s.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
        if depth == 0 {
            break;
        }
        if depth == 1 && c == ',' {
            heads.extend(ident_at(&item).map(str::to_string));
            item.clear();
        } else if depth == 1 {
            item.push(c);
        }
    }
    heads.extend(ident_at(&item).map(str::to_string));
    heads
}

fn is_word(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The first segment after each `prefix` (which starts a path: no word
/// character or `::` right before it), every item of a `{…}` group too.
fn heads_after(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (at, _) in text.match_indices(prefix) {
        let before = &text[..at];
        if is_word(before.chars().next_back()) || before.ends_with("::") {
            continue;
        }
        let rest = text[at + prefix.len()..].trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            out.extend(group_heads(group));
        } else if let Some(id) = ident_at(rest) {
            out.insert(id.to_string());
        }
    }
    out
}

/// The crate's top-level modules that `text` names through a path from
/// the crate root, as seen from a file whose module path is `module`:
/// `crate::x`, and `super::…::x` with enough `super`s to reach the root.
fn imported_modules(text: &str, module: &[String]) -> BTreeSet<String> {
    let text = code(text);
    let mut out = heads_after(&text, "crate::");
    if !module.is_empty() {
        out.extend(heads_after(&text, &"super::".repeat(module.len())));
    }
    out
}

/// The module path of a file under src/: `src/replica/catalog/x.rs` is
/// `[replica, catalog, x]`, `src/replica/mod.rs` is `[replica]`.
fn module_path(file: &str) -> Vec<String> {
    let rel = file
        .strip_prefix("src/")
        .unwrap()
        .strip_suffix(".rs")
        .unwrap();
    let mut parts: Vec<String> = rel.split('/').map(str::to_string).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// Top-level modules of the crate (files and folders directly in src/).
fn top_modules() -> BTreeSet<String> {
    std::fs::read_dir(root())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() || p.extension().is_some_and(|x| x == "rs"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().to_string())
        .filter(|m| m != "lib" && m != "main")
        .collect()
}

/// The files of `module` that import `other` (a top-level module).
fn importers(module: &str, other: &str) -> Vec<String> {
    module_files(module)
        .into_iter()
        .filter(|f| imported_modules(&source(f), &module_path(f)).contains(other))
        .collect()
}

fn module_files(module: &str) -> Vec<String> {
    let mut files = Vec::new();
    let file = format!("src/{module}.rs");
    if root().join(format!("{module}.rs")).exists() {
        files.push(file);
    }
    if root().join(module).is_dir() {
        files.extend(files_under(&format!("src/{module}")));
    }
    assert!(!files.is_empty(), "no module {module} in src/");
    files
}

/// Which top-level modules each top-level module imports, with the files.
fn module_graph() -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let tops = top_modules();
    let mut graph = BTreeMap::new();
    for m in &tops {
        let mut edges: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for f in module_files(m) {
            for dep in imported_modules(&source(&f), &module_path(&f)) {
                if tops.contains(&dep) && &dep != m {
                    edges.entry(dep).or_default().push(f.clone());
                }
            }
        }
        graph.insert(m.clone(), edges);
    }
    graph
}

#[test]
fn the_import_reader_sees_every_form() {
    let here = ["replica".to_string(), "fetch".to_string()];
    let text = "use crate::{\n    log,\n    runtime::{self, process},\n};\n\
                // use crate::vfs;\n/* crate::sqlite */\n\
                let x = crate::store::open();\nuse super::super::cache::Cache;\n\
                use super::flight; fn a() { my_crate::btree(); }";
    let got = imported_modules(text, &here);
    let want: BTreeSet<String> = ["cache", "log", "runtime", "store"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(got, want);
}

#[test]
fn replica_imports_nothing_from_vfs() {
    let f = importers("replica", "vfs");
    assert!(f.is_empty(), "replica/ imports vfs/: {f:?}");
}

#[test]
fn runtime_and_replica_do_not_import_each_other_both_ways() {
    // The allowed direction is replica -> runtime (the registry is a
    // per-epoch value of the runtime); runtime must not import replica, and
    // the two must never import each other.
    let up = importers("runtime", "replica");
    assert!(up.is_empty(), "runtime imports replica: {up:?}");
    let graph = module_graph();
    let both = graph["runtime"].contains_key("replica") && graph["replica"].contains_key("runtime");
    assert!(!both, "runtime and replica import each other: {graph:?}");
}

#[test]
fn no_two_modules_import_each_other_and_no_cycle() {
    let graph = module_graph();
    let mut pairs = Vec::new();
    for (a, edges) in &graph {
        for (b, files) in edges {
            if a < b
                && let Some(back) = graph.get(b).and_then(|e| e.get(a))
            {
                pairs.push(format!("{a} <-> {b} ({files:?} / {back:?})"));
            }
        }
    }
    assert!(pairs.is_empty(), "modules importing each other: {pairs:#?}");
    // Longer cycles: a depth-first search over the module graph.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeMap<String, Vec<String>>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) {
        match state.get(m) {
            Some(2) => return,
            Some(1) => panic!("import cycle: {} -> {m}", stack.join(" -> ")),
            _ => {}
        }
        state.insert(m.to_string(), 1);
        stack.push(m.to_string());
        for dep in graph[m].keys() {
            visit(dep, graph, state, stack);
        }
        stack.pop();
        state.insert(m.to_string(), 2);
    }
    let mut state = BTreeMap::new();
    for m in graph.keys() {
        visit(m, &graph, &mut state, &mut Vec::new());
    }
}

#[test]
fn no_file_level_cycles_in_sqlite_and_storage() {
    // history_vtab must not reach sqlite/functions, object_error not
    // storage/object: neither through `super::` nor from the crate root.
    for (file, sibling) in [
        ("src/sqlite/history_vtab.rs", "functions"),
        ("src/storage/object_error.rs", "object"),
    ] {
        let text = code(&source(file));
        let parent = &module_path(file)[0];
        for prefix in ["super::".to_string(), format!("crate::{parent}::")] {
            assert!(
                !heads_after(&text, &prefix).contains(sibling),
                "{file} refers to {prefix}{sibling}"
            );
        }
    }
}

#[test]
fn error_rs_knows_no_sqlite_constant() {
    let text = code(&source("src/error.rs"));
    assert!(!text.contains("sqlite"), "src/error.rs mentions sqlite");
    assert!(!imported_modules(&text, &module_path("src/error.rs")).contains("sqlite"));
}

#[test]
fn the_cache_and_the_vfs_import_no_storage_type() {
    // Storage errors are mapped once, where error.rs wraps them (the VFS
    // asks `Error`, not the storage error's kind); the cache names a file by
    // its level and LTX name, not by the storage layer's FileId.
    for m in ["cache", "vfs"] {
        let f = importers(m, "storage");
        assert!(f.is_empty(), "{m} imports storage: {f:?}");
    }
}

#[test]
fn the_local_store_knows_pages_not_replicas() {
    for m in ["replica", "vfs", "sqlite", "storage"] {
        let f = importers("store", m);
        assert!(f.is_empty(), "store/ imports {m}: {f:?}");
    }
}

/// The field lines of `pub struct name { … }` in `file`.
fn fields(file: &str, name: &str) -> Vec<String> {
    let src = source(file);
    let open = format!("pub struct {name} {{");
    let start = src
        .find(&open)
        .unwrap_or_else(|| panic!("{file} has no {open}"));
    src[start + open.len()..]
        .lines()
        .take_while(|l| l.trim() != "}")
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .collect()
}

#[test]
fn the_rooms_of_a_replica_keep_their_fields_private() {
    for (file, name) in [
        ("src/replica/fetch/mod.rs", "Fetcher"),
        ("src/replica/catalog.rs", "Catalog"),
        ("src/replica/verifier.rs", "Verifier"),
    ] {
        let fields = fields(file, name);
        assert!(!fields.is_empty(), "{name} has no fields in {file}");
        for f in fields {
            assert!(!f.starts_with("pub"), "{name} exposes a field: {f}");
        }
    }
}

#[test]
fn io_is_a_holder_with_no_behaviour_elsewhere() {
    for f in files_under("src/replica")
        .iter()
        .filter(|f| !f.ends_with("/mod.rs"))
    {
        assert!(!source(f).contains("impl Io {"), "{f} adds behaviour to Io");
    }
}
