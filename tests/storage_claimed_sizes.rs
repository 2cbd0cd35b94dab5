//! A size that storage claims for an object is not memory to set aside:
//! NATS lists an object's size from its metadata, which whoever may write
//! the bucket sets. A listing that claims a petabyte for ten bytes must
//! fail the read with an error, not abort the process on an allocation
//! of a petabyte.
//!
//! Runs against the NATS server of `tests/harness/servers.sh` when its
//! environment is set (`. /tmp/lsvfs-servers/env.sh`); a missing server
//! fails the test where it is required (CI, or servers.sh started it).

#[path = "conformance_servers/nats.rs"]
mod nats;
#[path = "conformance_servers/required.rs"]
mod required;

use std::time::Duration;

use litestream_vfs::storage::{self, Level, ReplicaUrl, Timeouts};

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

#[test]
fn a_nats_object_that_claims_a_petabyte_fails_its_read() {
    let (Some(host), Some(user), Some(password)) = (
        env("LSVFS_NATS_HOST"),
        env("LSVFS_NATS_USER"),
        env("LSVFS_NATS_PASSWORD"),
    ) else {
        if let Some(why) = required::required("nats") {
            panic!("nats: the server is required here ({why}) but its environment is not set");
        }
        eprintln!("skipped: no NATS server in the environment");
        return;
    };
    let bucket = format!(
        "claims-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let mut server = nats::Nats::create_bucket(&host, &user, &password, &bucket);
    let name = "ltx/0/0000000000000001-0000000000000001.ltx";
    let petabyte = 1usize << 50;
    server.put_claiming(name, b"ten bytes!", "claims0", petabyte);
    let s = storage::open(
        &ReplicaUrl::parse(&format!("nats://{user}:{password}@{host}/{bucket}")).unwrap(),
        Timeouts::within(Duration::from_secs(20)),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let listed = rt.block_on(s.list(Level::L0, None)).unwrap();
    let info = listed.first().copied().expect("the object is listed");
    assert_eq!(info.size, petabyte as u64);
    let e = rt
        .block_on(s.read_version(info.id, info.version, 0..10))
        .expect_err("ten bytes read as a petabyte");
    let text = e.to_string();
    assert!(text.contains("expected 1125899906842624"), "{text}");
    // The same for the real size: read.
    server.put(name, b"ten bytes!", "claims1");
    let s = storage::open(
        &ReplicaUrl::parse(&format!("nats://{user}:{password}@{host}/{bucket}")).unwrap(),
        Timeouts::within(Duration::from_secs(20)),
    )
    .unwrap();
    let info = rt.block_on(s.list(Level::L0, None)).unwrap()[0];
    assert_eq!(
        rt.block_on(s.read_version(info.id, info.version, 0..10))
            .unwrap(),
        b"ten bytes!"
    );
    server.delete_bucket();
}
