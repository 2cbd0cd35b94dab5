"""Shared by the comparison: paths, constants, processes, ports, logging."""
from __future__ import annotations

from pathlib import Path
import os
import signal
import socket
import subprocess
import sys
import time

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PY = sys.executable
BUCKET = "bench"
AWS_KEY, AWS_SECRET = "lsvfsbench", "lsvfsbench-secret"
DB_FORMAT = 3  # bump when the generated database changes
WORDS = ("amber basil cedar delta ember fjord garnet harbor indigo juniper kelp lumen maple nectar onyx "
         "pepper quartz raven saffron tundra umber velvet willow xenon yarrow zephyr invoice parcel "
         "express refund priority standard gift wrap fragile returned backorder pending shipped").split()
procs: list[subprocess.Popen] = []  # everything we started, stopped in finally
BEGIN, END = "<!-- results:begin (benches/compare/run --update-docs) -->", "<!-- results:end -->"


def log(*a):
    print("[compare]", *a, file=sys.stderr, flush=True)


def spawn(args, logfile, env=None, **kw):
    f = open(logfile, "ab")
    p = subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True, **kw)
    f.close()
    procs.append(p)
    return p


def stop(p: subprocess.Popen, sig=signal.SIGTERM, timeout=20):
    if p.poll() is None:
        try:
            p.send_signal(sig)
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if p in procs:
        procs.remove(p)


def stop_all():
    for p in list(procs):
        stop(p, timeout=10)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30, proc=None):
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args[0]} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} not ready after {timeout}s")


def base_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LITESTREAM_", "AWS_"))}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    return env
