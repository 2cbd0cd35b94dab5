//! Keeps dependencies' C symbols out of the shared library's exports.
//!
//! rustc links a cdylib with its own version script that exports every
//! `#[no_mangle]` function of every crate, dependencies included: crc-fast
//! (pulled in by object_store's S3 support) would put two dozen
//! `crc_fast_*` functions into the host's symbol namespace. A second version
//! script cannot be combined with rustc's on GNU ld, but `--exclude-libs=ALL`
//! can: it hides every symbol that comes from a dependency's archive, so
//! only this crate's three SQLite entry points and its two
//! `litestream_vfs_*last_error` functions stay exported
//! (tests/integration/test_load.py checks that).

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" {
        println!("cargo::rustc-cdylib-link-arg=-Wl,--exclude-libs=ALL");
    }
}
