#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| litestream_vfs_fuzz::btree_page(data));
