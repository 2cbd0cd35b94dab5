"""The host-wide local store (disk tier and hydration), with real processes
reading real Litestream replicas on S3 (s3s-fs behind a counting proxy) and
in folders: sharing between processes and across restarts, kill -9 during
hydration, compaction and new snapshots under sharing readers, a reset
replica (also one first opened, or hydrated, while another process holds
the store's lock), a full disk, a corrupted store file, a process holding the store's
lock, and a filler that forks and exits. (Privacy: test_store_private.py.)"""

import fcntl
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

import lsvfs
from faultproxy import FaultProxy
from servers import unique
from test_follow import ACCOUNTS, START, bank, transfer
from test_replicate import fill

CHILD = Path(__file__).with_name("store_child.py")
BASIC = lsvfs.FIXTURES / "basic-4k"
ROWS = 20_000


def run_child(uri: str, action: str, arg=None, env=None, timeout=180) -> dict:
    args = [sys.executable, str(CHILD), uri, action] + ([str(arg)] if arg is not None else [])
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["stderr"] = proc.stderr
    return out


def page_reads(out: dict) -> int:
    """Storage reads the action caused, beyond those of the open."""
    return out["after"]["reads"] - out["open"]["reads"]


@pytest.fixture(scope="module")
def replica(servers, tmp_path_factory):  # noqa: F811
    """A replica with a multi-MiB snapshot (read frame by frame), in a folder
    and on S3."""
    tmp = tmp_path_factory.mktemp("store")
    db, local = tmp / "primary.db", tmp / "replica"
    primary = lsvfs.primary(db)
    fill(primary, ROWS, 300)
    expected = lsvfs.digest(primary)
    with lsvfs.Litestream(lsvfs.file_replica_config(db, local), tmp):
        lsvfs.wait_replica_matches(lsvfs.file_url(local), expected, timeout=90, name="store-src.db").close()
    path = unique("store")
    servers.upload_tree("s3", local, path)
    os.environ.update(servers.reader_env("s3"))
    return servers, path, local, expected


@pytest.fixture
def proxied(replica):
    servers, path, local, expected = replica
    port = int(urllib.parse.urlsplit(servers.env["LSVFS_S3_ENDPOINT"]).port)
    proxy = FaultProxy(port).start()
    url = (f"s3://{servers.bucket}/{path}?endpoint=http://127.0.0.1:{proxy.port}"
           "&region=us-east-1&force-path-style=true")
    yield proxy, url, expected
    proxy.stop()


def uri(url: str, **params) -> str:
    params.setdefault("verify", "fetched")
    # Polls would add requests that the counts below do not expect.
    params.setdefault("poll_interval", "60s")
    return lsvfs.replica_uri(url, "store.db", **params)


def test_eight_processes_share_one_disk_tier_and_a_restart_reads_from_disk(proxied, tmp_path):
    proxy, url, expected = proxied
    cache = tmp_path / "cache"
    # Without the disk tier every process pays for its pages.
    cold = run_child(uri(url), "digest")
    assert cold["digest"] == expected and page_reads(cold) > 0

    first = run_child(uri(url, disk_cache=cache), "digest")
    assert first["digest"] == expected
    # Prefetch and demand reads race (a demand read may take over a queued
    # frame or join its flight), so two cold processes differ by a read or
    # two; the disk tier must add none beyond that.
    slack = max(2, page_reads(cold) // 10)
    assert abs(page_reads(first) - page_reads(cold)) <= slack, "the first process fetches as before"
    # What a bare open costs at the server (listing, page indexes).
    before = proxy.requests
    run_child(uri(url, disk_cache=cache), "lookups", 0)
    open_requests = proxy.requests - before

    before = proxy.requests
    outs = [None] * 8

    def reader(i):
        outs[i] = run_child(uri(url, disk_cache=cache), "digest")

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    during = proxy.requests - before
    for out in outs:
        assert out["digest"] == expected
        assert page_reads(out) == 0, out["after"]
        assert out["after"]["store_hits"] > 10
    # Only what each open costs reached the server.
    assert during <= 8 * open_requests, (during, open_requests)

    # A restart, after every process exited: still from disk, and so is
    # the open (file headers and page indexes): only the listing, and the
    # connection warm-up, reach the server.
    before = proxy.requests
    again = run_child(uri(url, disk_cache=cache), "lookups", 300)
    assert page_reads(again) == 0 and again["after"]["store_hits"] > 0
    assert again["after"]["reads"] == 0 and again["after"]["index_hits"] > 0, again["after"]
    assert proxy.requests - before <= again["after"]["lists"] + 1, (proxy.requests - before, again["after"])
    files = sorted(p.name for p in cache.iterdir())
    assert [os.path.splitext(f)[1] for f in files] == [".index", ".pages"], files


def test_cold_processes_filling_one_tier_at_once(proxied, tmp_path):
    proxy, url, expected = proxied
    cache = tmp_path / "cache"
    outs = [None] * 6

    def reader(i):
        outs[i] = run_child(uri(url, disk_cache=cache), "digest" if i % 2 else "lookups", None if i % 2 else 400)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(o["digest"] == expected for o in outs if "digest" in o)
    assert sum(o["after"]["store_writes"] for o in outs) > 0
    after = run_child(uri(url, disk_cache=cache), "digest")
    assert after["digest"] == expected and page_reads(after) == 0
    assert after["after"]["store_bad"] == 0, "concurrent writers tore an entry"


def test_two_replicas_in_one_directory_never_mix(replica, proxied, tmp_path):
    proxy, url, expected = proxied
    servers, path, local, _ = replica
    cache = tmp_path / "cache"
    # Another replica of other content in the same directory.
    other_db, other = tmp_path / "other.db", tmp_path / "other"
    conn = lsvfs.primary(other_db)
    fill(conn, 3000, 300, seed=9)
    other_expected = lsvfs.digest(conn)
    with lsvfs.Litestream(lsvfs.file_replica_config(other_db, other), tmp_path):
        lsvfs.wait_replica_matches(lsvfs.file_url(other), other_expected, timeout=60, name="o.db").close()
    a = run_child(uri(url, disk_cache=cache), "digest")
    b = run_child(uri(lsvfs.file_url(other), disk_cache=cache), "digest")
    assert (a["digest"], b["digest"]) == (expected, other_expected)
    assert len(list(cache.glob("*.pages"))) == 2
    a2 = run_child(uri(url, disk_cache=cache), "digest")
    b2 = run_child(uri(lsvfs.file_url(other), disk_cache=cache), "digest")
    assert (a2["digest"], b2["digest"]) == (expected, other_expected)
    assert page_reads(a2) == 0 and page_reads(b2) == 0


def hydrate_proc(u: str, env=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(CHILD), u, "hydrate", "300"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def test_hydration_fills_in_large_ranges_and_resumes_after_kill_9(proxied, tmp_path):
    proxy, url, expected = proxied
    path = tmp_path / "hydrated.db"
    u = uri(url, hydration_enabled="true", hydration_path=path)
    # Slow storage, so that the kill lands mid-fill.
    proxy.set("delay:400")
    p = hydrate_proc(u)
    progress = 0.0
    for line in p.stdout:
        progress = json.loads(line).get("progress", progress)
        if 0 < progress < 100:
            break
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert 0 < progress < 100, f"killed at {progress}%"
    proxy.set("pass")
    before = proxy.requests
    out = run_child(u, "hydrate", 300)
    assert out["progress"] == 100.0 and out["file"] == str(path)
    assert out["digest"] == expected
    # Once hydrated, reading everything costs no storage request.
    assert out["after"]["reads"] == out["before_reads"]["reads"], (out["before_reads"], out["after"])
    # The resume fetched ranges, never pages one by one.
    fill_reads = out["before_reads"]["reads"] - out["open"]["reads"]
    assert fill_reads < 20, out
    assert proxy.requests - before < 60
    # Persistent: a restart is hydrated at once.
    again = run_child(u, "hydrate", 60)
    assert again["progress"] == 100.0 and again["digest"] == expected
    assert again["after"]["reads"] == again["open"]["reads"]


def test_processes_naming_one_path_cooperate(proxied, tmp_path):
    proxy, url, expected = proxied
    path = tmp_path / "shared.db"
    u = uri(url, hydration_enabled="true", hydration_path=path)
    proxy.set("delay:50")
    procs = [hydrate_proc(u) for _ in range(3)]
    outs = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr
        outs.append(json.loads(stdout.strip().splitlines()[-1]))
    proxy.set("pass")
    for o in outs:
        assert o["progress"] == 100.0 and o["digest"] == expected
    # One process filled (wrote pages); the others waited for it and read
    # its pages, writing none.
    writes = sorted(o["after"]["store_writes"] for o in outs)
    assert writes[0] == 0 and writes[1] == 0 and writes[2] > 0, writes
    assert all(o["after"]["store_hits"] > 0 for o in outs)


def test_temporary_hydration_is_removed_with_the_replica(replica, tmp_path):
    _, _, local, expected = replica
    tmpdir = tmp_path / "t"
    tmpdir.mkdir()
    out = run_child(uri(lsvfs.file_url(local), hydration_enabled="true", idle_timeout="0s"), "hydrate", 120,
                    env={"TMPDIR": str(tmpdir)})
    assert out["progress"] == 100.0 and out["digest"] == expected
    assert out["file"].startswith(str(tmpdir))
    assert list(tmpdir.iterdir()) == [], "the temporary copy outlived its process"


def test_compaction_and_new_snapshots_under_processes_sharing_the_store(tmp_path):
    db, replica_dir = tmp_path / "bank.db", tmp_path / "replica"
    conn = bank(db)
    conn.execute("BEGIN")
    rnd = random.Random(11)  # incompressible: the snapshot is read frame by frame
    conn.executemany("INSERT INTO log(n, note) VALUES (0, ?)", [(rnd.randbytes(750).hex(),) for _ in range(3000)])
    conn.execute("COMMIT")
    config = ("l0-retention: 3s\nl0-retention-check-interval: 1s\n"
              + lsvfs.file_replica_config(db, replica_dir, l1_interval="2s", snapshot_interval="6s"))
    cache = tmp_path / "cache"
    u = uri(lsvfs.file_url(replica_dir), disk_cache=cache, poll_interval="200ms")
    with lsvfs.Litestream(config, tmp_path) as ls:
        lsvfs.wait_replica_matches(lsvfs.file_url(replica_dir), lsvfs.digest(conn), timeout=60,
                                   name="bank.db").close()
        stop = threading.Event()

        def write():
            rnd, n = random.Random(3), 0
            while not stop.is_set():
                n += 1
                transfer(conn, rnd, n)
                time.sleep(rnd.uniform(0.01, 0.04))

        w = threading.Thread(target=write)
        w.start()
        try:
            outs = [None] * 3

            def reader(i):
                time.sleep(i * 4)  # later readers open after compactions and snapshots
                outs[i] = run_child(u, "bank", 14)

            threads = [threading.Thread(target=reader, args=(i,)) for i in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            stop.set()
            w.join()
        assert "compaction complete" in ls.output()
    for o in outs:
        assert o["seen"] > 50 and o["integrity"] == "ok", o
    # Readers that opened after compactions and a new snapshot still found
    # the pages the first one stored.
    def why(o):
        counts = {k: v for k, v in o["after"].items() if k.startswith(("store", "reads"))}
        store_lines = [ln for ln in o["stderr"].splitlines() if "local store" in ln or "reset" in ln]
        return f"{counts}\n  " + "\n  ".join(store_lines[-8:])

    assert all(o["after"]["store_hits"] > 100 and o["after"]["store_hits"] > 10 * o["after"]["store_misses"]
               for o in outs[1:]), "\n".join(why(o) for o in outs)
    snapshots = list((replica_dir / "ltx" / "9").iterdir())
    assert len(snapshots) >= 2, "no new snapshot was written under the readers"


def test_time_travel_reads_old_versions_through_the_store(tmp_path):
    db, replica_dir, cache = tmp_path / "p.db", tmp_path / "replica", tmp_path / "cache"
    conn = lsvfs.primary(db)
    fill(conn, 4000, 400, seed=3)
    with lsvfs.Litestream(lsvfs.file_replica_config(db, replica_dir), tmp_path):
        lsvfs.wait_for(lambda: run_child(uri(lsvfs.file_url(replica_dir)), "digest")["digest"]
                       == lsvfs.digest(conn), 60, interval=0.5, what="the first state")
        then = lsvfs.digest(conn)
        time.sleep(1.5)
        # With its milliseconds: a time cut to the second could fall up to
        # a second earlier, before the first state was written.
        t = time.time() - 0.7
        at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"
        conn.execute("UPDATE items SET data = randomblob(400) WHERE id % 3 = 0")
        now = lsvfs.digest(conn)
        lsvfs.wait_for(lambda: run_child(uri(lsvfs.file_url(replica_dir)), "digest")["digest"] == now,
                       60, interval=0.5, what="the second state")
    u = uri(lsvfs.file_url(replica_dir), disk_cache=cache)
    first = run_child(u, "travel", at)
    assert (first["digest_then"], first["digest"]) == (then, now)
    again = run_child(u, "travel", at)
    assert (again["digest_then"], again["digest"]) == (then, now)
    assert again["after"]["store_hits"] > 0


def test_a_hydrated_follower_catches_up_with_the_files_the_poller_fetches(tmp_path):
    db, replica_dir = tmp_path / "bank.db", tmp_path / "replica"
    conn = bank(db)
    rnd = random.Random(5)
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO log(n, note) VALUES (0, ?)", [(rnd.randbytes(750).hex(),) for _ in range(2000)])
    conn.execute("COMMIT")
    with lsvfs.Litestream(lsvfs.file_replica_config(db, replica_dir), tmp_path):
        lsvfs.wait_for(lambda: run_child(uri(lsvfs.file_url(replica_dir)), "digest")["digest"]
                       == lsvfs.digest(conn), 60, interval=0.5, what="the replica")
        stop = threading.Event()

        def write():
            n = 0
            while not stop.is_set():
                n += 1
                transfer(conn, rnd, n)
                time.sleep(0.05)

        w = threading.Thread(target=write)
        w.start()
        try:
            out = run_child(uri(lsvfs.file_url(replica_dir), hydration_enabled="true",
                                hydration_path=tmp_path / "copy", poll_interval="500ms"), "follow", 8)
        finally:
            stop.set()
            w.join()
    new_txids = out["txid_after"] - out["txid_before"]
    fill_reads = out["after"]["hydration_reads"] - out["hydrated"]["hydration_reads"]
    assert new_txids > 5, out
    # The poller fetches each new LTX file whole (one request per file,
    # each covering one TXID or more) and its pages go into the copy:
    # catching up, hydration itself asks storage for nothing.
    assert fill_reads == 0, out["after"]
    assert out["hydrated"]["hydration_reads"] > 0, "the fill was counted"
    loads = (out["after"]["reads"] - out["hydrated"]["reads"]) - fill_reads
    assert loads <= 2 * new_txids, (loads, new_txids)  # file loads, plus the poller's lineage probes
    assert out["progress"] == 100.0
    # Every page of a read the poller did not overlap came from the copy
    # (a read on a state the poller has just replaced may miss it: the copy
    # holds one version of each page).
    quiet = out["quiet"]
    assert quiet["reads"] >= 5 and quiet["store_hits"] >= 5 * 1000, quiet
    assert quiet["store_misses"] == 0, json.dumps({k: out[k] for k in ("quiet", "hydrated", "after", "stderr")})


def one_shot_replica(tmp: Path, replica_dir: Path, value: str) -> str:
    """A replica whose whole content is TXID 1: the primary is written before
    Litestream starts, so two such replicas share every TXID."""
    db = tmp / f"primary-{value}.db"
    conn = lsvfs.primary(db)
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    conn.execute("BEGIN")
    rnd = random.Random(value)
    conn.executemany("INSERT INTO t(v) VALUES (?)", [(rnd.randbytes(400).hex(),) for _ in range(5000)])
    conn.execute("COMMIT")
    expected = lsvfs.digest(conn)
    conn.close()
    with lsvfs.Litestream(lsvfs.file_replica_config(db, replica_dir), tmp):
        # Checked from fresh processes: this one may still hold the replica
        # of the old lineage in its registry.
        lsvfs.wait_for(lambda: run_child(uri(lsvfs.file_url(replica_dir)), "digest")["digest"] == expected,
                       60, interval=0.5, what="the replica")
    return expected


def test_a_reset_replica_is_never_served_from_the_old_lineage(tmp_path):
    replica_dir, cache = tmp_path / "replica", tmp_path / "cache"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    old = one_shot_replica(tmp_path / "a", replica_dir, "a")
    u = uri(lsvfs.file_url(replica_dir), disk_cache=cache)
    first = run_child(u, "digest")
    assert first["digest"] == old and first["after"]["store_writes"] > 0
    # The replica is deleted and re-created: TXIDs start again at 1.
    shutil.rmtree(replica_dir)
    new = one_shot_replica(tmp_path / "b", replica_dir, "b")
    assert new != old
    assert sorted(p.name for p in (replica_dir / "ltx" / "0").iterdir())[0].startswith("0000000000000001-")
    out = run_child(u, "digest")
    assert out["digest"] == new
    assert out["after"]["store_hits"] == 0, "served a page of the old lineage"
    assert run_child(u, "digest")["after"]["store_hits"] > 0, "the new lineage is kept in turn"


def test_a_reset_replica_opened_while_another_process_holds_the_lock_is_never_served_from_the_old_lineage(tmp_path):
    """As above, but the first process to open the reset replica finds the
    store's lock held by another process (stopped, say): its attach of the
    new lineage is skipped. It reads the new lineage from storage, never a
    page of the old one; the next process, with the lock free, starts the
    new lineage in the store (no old page served either), and the one after
    is served from it."""
    replica_dir, cache = tmp_path / "replica", tmp_path / "cache"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    old = one_shot_replica(tmp_path / "a", replica_dir, "a")
    u = uri(lsvfs.file_url(replica_dir), disk_cache=cache, storage_timeout="1s")
    first = run_child(u, "digest")
    assert first["digest"] == old and first["after"]["store_writes"] > 0
    shutil.rmtree(replica_dir)
    new = one_shot_replica(tmp_path / "b", replica_dir, "b")
    assert new != old
    (pages,) = cache.glob("*.pages")
    with open(pages, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        skipped = run_child(u, "digest", timeout=90)
    assert skipped["digest"] == new
    assert skipped["after"]["store_lock_timeouts"] >= 1, skipped["after"]
    assert skipped["after"]["store_hits"] == 0, "served a page of the old lineage"
    assert skipped["after"]["store_writes"] == 0, skipped["after"]
    out = run_child(u, "digest")
    assert out["digest"] == new
    assert out["after"]["store_hits"] == 0, "served a page of the old lineage"
    assert run_child(u, "digest")["after"]["store_hits"] > 0, "the new lineage is kept in turn"


def test_hydration_of_a_reset_replica_while_another_process_holds_the_lock_never_serves_the_old_copy(tmp_path):
    """A hydrated copy of the old lineage; the replica is reset. The first
    process to open the new lineage finds the copy's lock held by another
    process: its attach and fill writes are skipped, so it claims no
    progress and reads the new database from storage, never a page of the
    old copy. Once the lock is free, the next process hydrates the new
    lineage to 100 % and reads it from the copy."""
    replica_dir, copy = tmp_path / "replica", tmp_path / "h.db"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    old = one_shot_replica(tmp_path / "a", replica_dir, "a")
    u = uri(lsvfs.file_url(replica_dir), hydration_enabled="true", hydration_path=copy,
            storage_timeout="1s")
    first = run_child(u, "hydrate")
    assert first["progress"] == 100 and first["digest"] == old
    shutil.rmtree(replica_dir)
    new = one_shot_replica(tmp_path / "b", replica_dir, "b")
    assert new != old
    with open(copy, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        skipped = run_child(u, "hydrate", 6, timeout=90)
    assert skipped["progress"] < 100, skipped
    assert skipped["digest"] == new
    assert skipped["after"]["store_hits"] == 0, "served a page of the old copy"
    assert skipped["after"]["store_lock_timeouts"] >= 1, skipped["after"]
    out = run_child(u, "hydrate")
    assert out["progress"] == 100 and out["digest"] == new
    assert out["after"]["store_hits"] > 0, "the new lineage is read from the copy"


def test_a_full_disk_keeps_queries_working_with_one_warning(proxied, tmp_path):
    proxy, url, expected = proxied
    mnt = tmp_path / "small"
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        out = run_child(uri(url, disk_cache=mnt / "cache"), "digest", env={"LITESTREAM_LOG_LEVEL": "WARN"})
        assert out["digest"] == expected
        assert out["after"]["store_write_errors"] >= 1
        warnings = [l for l in out["stderr"].splitlines() if "local store" in l]
        assert len(warnings) == 1, out["stderr"]
        assert "No space left" in warnings[0] or "os error 28" in warnings[0], warnings
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_an_unwritable_directory_keeps_queries_working(proxied, tmp_path):
    proxy, url, expected = proxied
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    out = run_child(uri(url, disk_cache=blocker / "cache"), "digest")
    assert out["digest"] == expected
    warnings = [l for l in out["stderr"].splitlines() if "local store" in l]
    assert len(warnings) == 1, out["stderr"]


def test_a_corrupted_store_file_is_a_miss(proxied, tmp_path):
    proxy, url, expected = proxied
    cache = tmp_path / "cache"
    run_child(uri(url, disk_cache=cache), "digest")
    (store,) = cache.glob("*.pages")
    data = bytearray(store.read_bytes())
    rnd = random.Random(1)
    for _ in range(200):
        at = rnd.randrange(8192, len(data))
        data[at] ^= 0x5A
    store.write_bytes(bytes(data))
    out = run_child(uri(url, disk_cache=cache), "digest")
    assert out["digest"] == expected
    assert out["after"]["store_bad"] > 0 and page_reads(out) > 0


def test_damaged_pages_of_a_hydrated_copy_are_swept_and_fetched_again(proxied, tmp_path):
    """Pages of a complete copy damaged while no process ran (a power loss
    that kept their metadata but not their bytes, a bad disk): the next
    process's first fill round reads the copy through, drops them and
    fetches them again; no query gets their bytes."""
    proxy, url, expected = proxied
    path = tmp_path / "copy.db"
    u = uri(url, hydration_enabled="true", hydration_path=path)
    first = run_child(u, "hydrate", 300)
    assert first["progress"] == 100.0 and first["digest"] == expected
    # The first chunk's pages start at 128 KiB (64 KiB of header, then its
    # metadata block); the fixture's pages are 4 KiB. Pages 2-1001 only.
    data = bytearray(path.read_bytes())
    damaged = random.Random(3).sample(range(1, 1001), 20)
    for i in damaged:
        data[131072 + i * 4096 + 100] ^= 0x5A
    path.write_bytes(bytes(data))
    out = run_child(u, "dropped", 20)
    assert out["digest"] == expected
    assert out["after"]["store_dropped"] == 20, out["after"]
    # Fetched again: the reads after the fill went to the copy alone.
    assert out["before_reads"]["reads"] > out["open"]["reads"]
    assert out["after"]["reads"] == out["before_reads"]["reads"], (out["before_reads"], out["after"])
    assert out["after"]["store_bad"] == out["before_reads"]["store_bad"]


def test_a_process_holding_the_store_lock_never_stalls_a_reader(tmp_path):
    """Another process stopped while it holds the store's write lock: a
    reader goes on from storage within the bound (instead of waiting for
    ever), and says so in its stats."""
    want = json.loads((BASIC / "manifest.json").read_text())["history"][-1]["digest"]
    cache = tmp_path / "cache"
    u = uri(lsvfs.file_url(BASIC / "replica"), disk_cache=cache)
    assert run_child(u, "digest")["digest"] == want
    (pages,) = cache.glob("*.pages")
    with open(pages, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        out = run_child(u, "digest", timeout=90)
    assert out["digest"] == want
    assert out["after"]["store_lock_timeouts"] >= 1, out["after"]
    assert out["after"]["store_hits"] == 0, "an unattached store is not used"


def test_a_lock_that_stays_held_is_waited_for_once_per_query_not_once_per_page(replica, tmp_path):
    """The store's lock taken by another holder after the reader attached
    (the churn test's stopped process): a full read misses every page, and
    each batch of pages it fetches skips its store write. Only the first
    skip waits for the lock (up to storage_timeout); the others try once
    and go on. Before, each waited the whole bound: a query missing dozens
    of batches hung its host for that many times storage_timeout."""
    _, _, local, want = replica
    cache = tmp_path / "cache"
    u = uri(lsvfs.file_url(local), disk_cache=cache, storage_timeout="1s", cache_size="1MiB")
    out = run_child(u, "locked", cache, timeout=170)
    assert out["digest"] == want
    skipped = out["after"]["store_lock_timeouts"] - out["before_reads"]["store_lock_timeouts"]
    assert skipped >= 5, out["after"]
    assert out["after"]["store_lock_waits"] == 1, out["after"]
    assert out["after"]["store_hits"] == 0 and out["after"]["store_writes"] == out["before_reads"]["store_writes"]


FORK_FILLER = """
import os, sqlite3, sys, time
sys.path.insert(0, {here!r})
import lsvfs
lsvfs.load_extension()
conn = sqlite3.connect({uri!r}, uri=True, isolation_level=None)
conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
# The only process: it fills. Wait until the fill has begun.
deadline = time.monotonic() + 120
while float(conn.execute("PRAGMA litestream_hydration_progress").fetchone()[0]) <= 0:
    assert time.monotonic() < deadline, "the fill never began"
    time.sleep(0.05)
pid = os.fork()
if pid == 0:
    # A worker of a pre-forking server: it lives on with what it inherited
    # (but not the test's pipes, which it would keep open).
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 1)
    os.dup2(null, 2)
    time.sleep(600)
    os._exit(0)
print(pid, flush=True)
os._exit(0)  # the filler exits mid-fill
"""


def test_a_filler_that_forks_and_exits_leaves_the_fill_to_others(proxied, tmp_path):
    """The fill lock's descriptor is not kept by a forked child: after the
    filler exits, a new process becomes the filler and hydration completes
    while the child still lives. (Before: the child held the lock, and no
    process could fill until it exited: with store/fork.rs's child handler
    disabled, `AssertionError: 1.8`, `assert (1.8 == 100.0)`: the new
    process never filled past the first process's 1.8 %.)"""
    proxy, url, expected = proxied
    path = tmp_path / "forked.db"
    u = uri(url, hydration_enabled="true", hydration_path=path, disk_cache=tmp_path / "cache")
    proxy.set("delay:400")
    r = subprocess.run([sys.executable, "-c", FORK_FILLER.format(here=str(CHILD.parent), uri=u)],
                       capture_output=True, text=True, timeout=180, env=os.environ.copy())
    assert r.returncode == 0, r.stdout + r.stderr
    child = int(r.stdout.split()[0])
    try:
        os.kill(child, 0)  # still alive
        proxy.set("pass")
        out = run_child(u, "hydrate", 90)
        assert out["progress"] == 100.0 and out["digest"] == expected, out["progress"]
        assert out["after"]["store_writes"] > 0, "this process became the filler"
        os.kill(child, 0)
    finally:
        os.kill(child, signal.SIGKILL)
