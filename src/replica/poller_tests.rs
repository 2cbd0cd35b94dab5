//! The poller under supervision: a panic inside its loop does not end
//! following.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::*;
use crate::config::{Config, Sources};
use crate::ltx::{LtxBuilder, PageSize};

/// Level-0 file of TXID `txid` setting page 2 of a 2-page database.
fn write_l0(root: &Path, txid: u64) {
    let dir = root.join("ltx").join("0");
    std::fs::create_dir_all(&dir).unwrap();
    let mut b = LtxBuilder::new(PageSize::new(4096).unwrap(), txid, txid, 2)
        .timestamp_ms(1_000_000 + txid as i64);
    if txid == 1 {
        b = b.page(1, b"page one");
    }
    b = b.page(2, format!("txid {txid}").as_bytes());
    std::fs::write(dir.join(format!("{txid:016x}-{txid:016x}.ltx")), b.build()).unwrap();
}

fn config(root: &Path) -> Config {
    config_with(root, &[])
}

fn config_with(root: &Path, more: &[(&str, String)]) -> Config {
    let url = url::Url::from_directory_path(root).unwrap().to_string();
    let mut uri = vec![
        ("replica_url".to_string(), url),
        ("poll_interval".to_string(), "10ms".to_string()),
    ];
    uri.extend(more.iter().map(|(k, v)| (k.to_string(), v.clone())));
    Config::parse(&Sources {
        uri: &uri,
        env: &|_: &str| None,
    })
    .unwrap()
}

/// A runtime of one async worker: work that blocked it would stop every
/// other task.
fn one_worker() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// What the `file://` storage of `root` calls itself (the scope of its
/// pause points and test hooks).
fn describe_of(root: &Path) -> String {
    format!(
        "file://{}",
        url::Url::from_directory_path(root).unwrap().path()
    )
}

/// Waits until `done` holds, for at most 20 s (then fails with `what`).
fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// With a thread parked at `gate` (reached) inside blocking work, another
/// task still gets `rt`'s worker; then releases the gate. `doing` names
/// the work for the failure message.
fn another_task_runs_while_parked(
    rt: &tokio::runtime::Runtime,
    gate: crate::pause::Gate,
    doing: &str,
) {
    let (tx, rx) = std::sync::mpsc::channel();
    rt.spawn(async move {
        let _ = tx.send(());
    });
    let ran = rx.recv_timeout(Duration::from_secs(10));
    gate.release();
    assert!(
        ran.is_ok(),
        "a task could not run while {doing}: that work blocks the async worker"
    );
}

#[test]
fn a_poller_that_panics_is_restarted_and_keeps_following() {
    let dir = tempfile::tempdir().unwrap();
    write_l0(dir.path(), 1);
    let rt = one_worker();
    let replica = rt.block_on(Replica::open(config(dir.path()))).unwrap();
    assert_eq!(replica.current().txid.0, 1);
    hooks::panic_next("poll", replica.io.storage.describe());
    {
        let _in = rt.enter();
        spawn(Arc::clone(&replica), || false);
    }
    let stats = Arc::clone(&replica.io.stats);
    eventually("the armed poll never ran", || {
        !hooks::is_armed("poll", replica.io.storage.describe())
    });
    write_l0(dir.path(), 2);
    eventually(
        "TXID 2 was never published: the poller did not come back after its panic",
        || replica.current().txid.0 == 2,
    );
    assert_eq!(stats.task_panics.load(Ordering::Relaxed), 1);
    assert!(
        stats.render().contains("task_panics=1"),
        "{}",
        stats.render()
    );
}

#[test]
fn following_into_the_local_store_does_not_block_the_async_worker() {
    let (dir, disk) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_l0(dir.path(), 1);
    // One worker: if the store write ran on it, nothing else could run.
    let rt = one_worker();
    let cfg = config_with(
        dir.path(),
        &[("disk_cache", disk.path().display().to_string())],
    );
    let replica = rt.block_on(Replica::open(cfg)).unwrap();
    assert!(replica.io.local.get().is_some(), "the disk tier is open");
    let gate = crate::pause::arm_in("poller.follow_loaded", replica.io.storage.describe());
    {
        let _in = rt.enter();
        spawn(Arc::clone(&replica), || false);
    }
    write_l0(dir.path(), 2);
    // The poller is inside the store write for TXID 2...
    gate.wait_reached(Duration::from_secs(20)).unwrap();
    // ...and another task still gets the worker.
    another_task_runs_while_parked(&rt, gate, "the poller wrote the local store");
    eventually("TXID 2 was never published", || {
        replica.current().txid.0 == 2
    });
}

#[test]
fn hydration_that_panics_is_restarted_and_fills() {
    let (dir, disk) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_l0(dir.path(), 1);
    write_l0(dir.path(), 2);
    // Armed before the open starts the task (its first round panics).
    let describe = describe_of(dir.path());
    hooks::panic_next("hydration", &describe);
    let rt = one_worker();
    let cfg = config_with(
        dir.path(),
        &[
            ("hydration_enabled", "true".to_string()),
            (
                "hydration_path",
                disk.path().join("h.db").display().to_string(),
            ),
        ],
    );
    let replica = rt.block_on(Replica::open(cfg)).unwrap();
    assert_eq!(replica.io.storage.describe(), describe);
    eventually("the armed round never ran", || {
        !hooks::is_armed("hydration", &describe)
    });
    eventually("hydration never completed after its panic", || {
        replica.hydration_progress() == Some(100.0)
    });
    assert_eq!(replica.io.stats.task_panics.load(Ordering::Relaxed), 1);
}

/// A level-9 snapshot of `pages` pages that do not compress: too large to
/// be read whole at open, so hydration fetches and writes its pages.
fn write_big_snapshot(root: &Path, pages: u32) {
    let dir = root.join("ltx").join("9");
    std::fs::create_dir_all(&dir).unwrap();
    let mut b = LtxBuilder::new(PageSize::new(4096).unwrap(), 1, 1, pages);
    for p in 1..=pages {
        b = b.page(p, &crate::replica::fetch::tests::noise(p));
    }
    std::fs::write(dir.join(format!("{:016x}-{:016x}.ltx", 1, 1)), b.build()).unwrap();
}

/// Opens the replica at `root` hydrating into `copy` (`verify=fetched`,
/// and `more`) with a gate armed at the store's write of pages:
/// hydration's first write will park there.
/// The worker is held while the replica opens (the open keeps what it read
/// in the store itself), so hydration, which the open spawns, starts only
/// once the gate is armed.
fn hydrate_into_a_parked_write(
    rt: &tokio::runtime::Runtime,
    root: &Path,
    copy: &Path,
    more: &[(&str, String)],
) -> (Arc<Replica>, crate::pause::Gate) {
    let mut settings = vec![
        ("hydration_enabled", "true".to_string()),
        ("hydration_path", copy.display().to_string()),
        ("verify", "fetched".to_string()),
    ];
    settings.extend_from_slice(more);
    let cfg = config_with(root, &settings);
    let (started, hold) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
    rt.spawn(async move {
        let _ = started.0.send(());
        let _ = hold.1.recv_timeout(Duration::from_secs(30));
    });
    started.1.recv_timeout(Duration::from_secs(10)).unwrap();
    let replica = rt.block_on(Replica::open(cfg)).unwrap();
    let gate = crate::pause::arm_in("store.pages_written", &copy.to_string_lossy());
    hold.0.send(()).unwrap();
    (replica, gate)
}

#[test]
fn hydration_writes_the_store_off_the_async_worker() {
    let (dir, disk) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_big_snapshot(dir.path(), 400);
    let copy = disk.path().join("h.db");
    // One worker: if hydration wrote on it, nothing else could run.
    let rt = one_worker();
    let (replica, gate) = hydrate_into_a_parked_write(&rt, dir.path(), &copy, &[]);
    // Hydration's first write parks inside the store write...
    gate.wait_reached(Duration::from_secs(20)).unwrap();
    // ...and another task still gets the worker.
    another_task_runs_while_parked(&rt, gate, "hydration wrote the store");
    eventually("hydration never completed", || {
        replica.hydration_progress() == Some(100.0)
    });
}

/// Another holder sits on the copy's write lock (here a thread of this
/// process, parked inside a store write): once a write's wait for it timed
/// out, hydration fetches no more runs for writes that would be skipped
/// (a stopped process would otherwise cost a download of the whole
/// database per poll), and it finishes once the lock is free.
#[test]
fn hydration_fetches_nothing_for_writes_a_held_lock_would_skip() {
    let (dir, disk) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // About 12 MiB: 12 runs of 1 MiB, 4 of them in flight at a time.
    write_big_snapshot(dir.path(), 3000);
    let copy = disk.path().join("h.db");
    let rt = one_worker();
    let more = [
        ("storage_timeout", "200ms".to_string()),
        ("poll_interval", "100ms".to_string()),
    ];
    let (replica, gate) = hydrate_into_a_parked_write(&rt, dir.path(), &copy, &more);
    // The first run's write parks holding the lock; the three runs beside
    // it wait for the lock, time out and skip their writes.
    gate.wait_reached(Duration::from_secs(20)).unwrap();
    let stat = |name: &str| {
        let s = replica.io.local.render();
        s.split_whitespace()
            .find_map(|kv| {
                kv.strip_prefix(name)?
                    .strip_prefix('=')?
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or_else(|| panic!("{name} not in {s}"))
    };
    eventually("no write skipped its wait", || {
        stat("store_lock_timeouts") >= 3
    });
    gate.release();
    eventually("hydration never completed", || {
        replica.hydration_progress() == Some(100.0)
    });
    // 12 runs, and the 3 skipped ones again: the runs after the timeouts
    // were not fetched to be thrown away (before: 12 in the first round,
    // 11 again in the next).
    let requests = replica.hydration_requests();
    assert!(
        requests <= 12 + 4,
        "{requests} hydration requests for 12 runs"
    );
    // 100 % means every page is in the copy (before, the skipped runs were
    // counted as filled, and the round remembered as done never fetched
    // them again: 100 % with 1,222 of 3,000 pages written).
    assert_eq!(stat("store_writes"), 3000, "{}", replica.io.local.render());
}

#[test]
fn verification_checks_its_chunks_off_the_async_worker() {
    let dir = tempfile::tempdir().unwrap();
    // Too large to be read whole, so it is verified in the background.
    write_big_snapshot(dir.path(), 400);
    let rt = one_worker();
    let describe = describe_of(dir.path());
    let gate = crate::pause::arm_in("verify.chunk", &describe);
    let cfg = config_with(dir.path(), &[("verify", "full".to_string())]);
    let replica = rt.block_on(Replica::open(cfg)).unwrap();
    assert_eq!(replica.io.storage.describe(), describe);
    // The verification parks inside the check of its first chunk...
    gate.wait_reached(Duration::from_secs(20)).unwrap();
    // ...and another task still gets the worker.
    another_task_runs_while_parked(&rt, gate, "a chunk was verified");
    eventually("the snapshot was never verified", || {
        replica.io.stats.verified.load(Ordering::Relaxed) == 1
    });
}

#[test]
fn a_verification_that_panics_is_counted_and_not_left_pending() {
    let dir = tempfile::tempdir().unwrap();
    write_big_snapshot(dir.path(), 400);
    let describe = describe_of(dir.path());
    hooks::panic_next("verification", &describe);
    let rt = one_worker();
    let cfg = config_with(dir.path(), &[("verify", "full".to_string())]);
    let replica = rt.block_on(Replica::open(cfg)).unwrap();
    assert_eq!(replica.io.storage.describe(), describe);
    eventually("the armed verification never ran", || {
        !hooks::is_armed("verification", &describe)
    });
    // Counted and logged, and the file's verdict forgotten (it is verified
    // again at its next load), never left Pending for ever.
    eventually(
        "the panic was not counted, or the file's verdict stayed Pending",
        || {
            replica.io.stats.task_panics.load(Ordering::Relaxed) == 1
                && replica.io.verifier.verdicts_len() == 0
        },
    );
    assert_eq!(replica.io.stats.verified.load(Ordering::Relaxed), 0);
}
