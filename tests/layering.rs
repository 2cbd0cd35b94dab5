//! Dependencies run one way (docs: `../shared/design/style.md`): checked on
//! the source, so that a new `use` that closes a cycle fails here.

use std::path::Path;

fn source(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

fn files_under(dir: &str) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut out = Vec::new();
    for e in std::fs::read_dir(&root).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "rs") {
            out.push(format!(
                "{dir}/{}",
                p.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    out
}

/// Whether `file` refers to `module` (a `use`, or a path in code).
fn mentions(file: &str, module: &str) -> bool {
    source(file)
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .any(|l| l.contains(module))
}

#[test]
fn replica_imports_nothing_from_vfs() {
    for f in files_under("src/replica") {
        assert!(!mentions(&f, "crate::vfs"), "{f} imports vfs/");
    }
}

#[test]
fn runtime_and_replica_do_not_import_each_other_both_ways() {
    assert!(
        !mentions("src/runtime.rs", "crate::replica"),
        "runtime imports replica"
    );
}

#[test]
fn no_file_level_cycles_in_sqlite_and_storage() {
    assert!(!mentions("src/sqlite/history_vtab.rs", "functions"));
    assert!(!mentions("src/storage/object_error.rs", "object::"));
}

#[test]
fn error_rs_knows_no_sqlite_constant() {
    assert!(!mentions("src/error.rs", "sqlite"));
}

#[test]
fn the_local_store_knows_pages_not_replicas() {
    for f in files_under("src/store") {
        for m in [
            "crate::replica",
            "crate::vfs",
            "crate::sqlite",
            "crate::storage",
        ] {
            assert!(!mentions(&f, m), "{f} imports {m}");
        }
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
        ("src/replica/fetch.rs", "Fetcher"),
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
    let mut files = files_under("src/replica");
    files.extend(files_under("src/replica/catalog"));
    for f in files.iter().filter(|f| !f.ends_with("/mod.rs")) {
        assert!(!source(f).contains("impl Io {"), "{f} adds behaviour to Io");
    }
}
