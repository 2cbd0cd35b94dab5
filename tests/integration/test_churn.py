"""The churn test with resets, short: reader processes sharing one disk tier
and one hydration path over S3 through the latency proxy, a bank-transfer
writer under the real `litestream replicate` (compaction every 2 s, a new
snapshot every 10 s here, every 20 s in the long run), readers killed with
SIGKILL and paused with SIGSTOP at random (some of the pauses aimed at a
process holding the shared store's lock, and at least once the test holds
that lock itself past the limit), and two full resets of the replica to a
different database (through each, one reader sleeps under SIGSTOP until the
new lineage has files named as those of the state it holds). Every read transaction checks the invariants
(soak.check_read); the counts below must be zero.

The long run: `scripts/soak --churn [minutes]`. CHURN_SEED=N repeats a run's
random choices (the seed is printed); CHURN_SECONDS sets the length."""

import os
import random
import signal
import sqlite3
import time

import lsvfs
import soak


def test_churn_with_resets_never_reads_a_wrong_or_mixed_state_and_never_hangs(servers, tmp_path):
    seed = int(os.environ["CHURN_SEED"]) if os.environ.get("CHURN_SEED") else None
    r = soak.churn(servers, float(os.environ.get("CHURN_SECONDS", "54")), readers=4, resets=2, seed=seed,
                   snapshot_interval="10s", storage_timeout=3, margin=5, workdir=tmp_path)
    failed = {k: r[k] for k in soak.FAILURES if r[k]}
    assert not failed, f"seed {r['seed']}: {failed}\n{soak.churn_summary(r)}\n(reader logs: {tmp_path}/readers.log)"
    # The run did what it says: resets happened, readers read every lineage's
    # states, processes were killed and stopped, Litestream compacted.
    assert r["resets"] == 2 and r["kills"] > 0 and r["stops"] > 0 and r["lock_holds"] > 0, r
    assert r["reads"] > 100, r
    assert r["compactions"] > 0, r


def test_the_hang_detector_counts_a_stuck_read_and_not_a_paused_process(tmp_path):
    """The churn's `slow` count is not vacuous: a reader process on a plain
    database counts a read that a lock holds past the limit, and does not
    count the seconds it spent stopped with SIGSTOP."""
    db = tmp_path / "plain.db"
    conn = soak.create_lineage(db, soak.Lineage.nth(0, 1), random.Random(1))
    conn.execute("PRAGMA journal_mode=delete")  # a writer's lock then blocks readers
    conn.close()
    r = soak.Reader(f"file:{db}?mode=ro", 1.0, dict(os.environ), tmp_path / "reader.log")
    try:
        lsvfs.wait_for(lambda: r.status.get("reads", 0) > 0, 30, what="the reader's first reads")
        r.signal(signal.SIGSTOP)
        time.sleep(3)  # three times the limit, stopped
        r.signal(signal.SIGCONT)
        before = r.status["reads"]
        lsvfs.wait_for(lambda: r.status.get("reads", 0) > before, 30, what="reads after SIGCONT")
        assert not r.violations, r.violations
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # a read now waits (busy timeout 5 s)
        try:
            lsvfs.wait_for(lambda: r.violations, 30, interval=0.05, what="the stuck read to be counted")
        finally:
            holder.execute("ROLLBACK")
    finally:
        assert r.finish(30), "the reader did not exit"
    assert [v["kind"] for v in r.violations] == ["slow"], r.violations
    assert r.status.get("final") and r.status["slow"] == 1, r.status
