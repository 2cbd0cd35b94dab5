"""Small things code written for the official extension relies on: short
poll intervals, readable log timestamps."""

import re

import lsvfs

BASIC = lsvfs.FIXTURES / "basic-4k"


def test_poll_interval_down_to_one_millisecond():
    url = lsvfs.file_url(BASIC / "replica")
    for v in ["5ms", "1ms"]:
        c = lsvfs.connect(url, name=f"poll-{v}.db", poll_interval=v)
        assert c.execute("SELECT litestream_txid()").fetchone()[0] == "0000000000000007"
    for v, words in [("0", "below 1ms"), ("0ms", "below 1ms"), ("soon", "bad value")]:
        r = lsvfs.shell(f".open file:x.db?vfs=litestream&replica_url={url}&poll_interval={v}",
                        "SELECT 1;")
        said = [line for line in r.stderr.splitlines() if 'unable to open database "' not in line]
        assert any("poll_interval" in line and words in line for line in said), r.stderr


def test_log_lines_carry_rfc3339_times(tmp_path):
    log = tmp_path / "vfs.log"
    url = lsvfs.file_url(BASIC / "replica")
    r = lsvfs.shell(f".open file:x.db?vfs=litestream&replica_url={url}", "SELECT count(*) FROM sqlite_master;",
                    env={"LITESTREAM_LOG_FILE": str(log), "LITESTREAM_LOG_LEVEL": "INFO"})
    assert r.returncode == 0, r.stderr
    lines = log.read_text().splitlines()
    assert any("opened at TXID" in line for line in lines), lines
    for line in lines:
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARN|ERROR) litestream-vfs: ", line), line
