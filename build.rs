//! Restricts the shared library's exports to the three SQLite entry points
//! with a linker version script (GNU ld and lld, on Linux).

fn main() {
    println!("cargo::rerun-if-changed=exports.map");
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" {
        let map = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("exports.map");
        println!("cargo::rustc-cdylib-link-arg=-Wl,--version-script={}", map.display());
    }
}
