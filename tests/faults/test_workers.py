"""Fault injection on the process executor: a worker killed mid-run, a parent killed with -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from zpeft.run.records import read_records
from zpeft.run.runner import run_suite
from zpeft.run.suite import parse_suite

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds worker processes through /proc")

SUITE = {"name": "workers", "datasets": [{"name": "toy", "options": {"n_photo": 600, "n_spec": 300}}],
         "backbones": ["cnn-small"], "device": "cpu",
         "strategies": ["zero-shot", "head-only", {"name": "lora", "grid": {"rank": [2, 4]}}, "full"],
         "training": {"base": {"epochs": 3, "batch_size": 32}, "finetune": {"epochs": 4, "batch_size": 32}},
         "evaluation": {"n_boot": 10}}


def children(pid: int) -> list[int]:
    """Live processes whose parent is `pid`."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def test_a_killed_worker_costs_a_retry_not_the_suite(tmp_path):
    suite = parse_suite(SUITE)
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.update(
        summary=run_suite(suite, tmp_path, executor="process", workers=2, progress=False)))
    runner.start()
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob("*.preds.npz")):  # the base model is done
        time.sleep(0.2)
    workers = [pid for pid in children(os.getpid()) if Path(f"/proc/{pid}/cmdline").read_bytes().count(b"spawn")]
    assert workers, "no worker process found"
    os.kill(workers[0], signal.SIGKILL)
    runner.join(timeout=300)
    summary = outcome["summary"]
    assert summary.ok + summary.failed == summary.planned == 5
    records = read_records(tmp_path)
    assert len(records) == 5
    assert all(r.status == "ok" or "a worker process died" in r.error for r in records)
    assert summary.ok >= 3  # the killed job and the one beside it are retried once in a fresh pool


@pytest.mark.slow
def test_workers_exit_when_their_parent_is_killed(tmp_path):
    suite_file = tmp_path / "workers.toml"
    suite_file.write_text('name = "workers"\ndatasets = [{ name = "toy", options = { n_photo = 2000, n_spec = 600 } }]\n'
                          'backbones = ["cnn-small"]\nstrategies = ["zero-shot", "full", "combined"]\ndevice = "cpu"\n'
                          '[training.base]\nepochs = 30\n[training.finetune]\nepochs = 30\n')
    parent = subprocess.Popen([sys.executable, "-m", "zpeft", "run", str(suite_file), "--out", str(tmp_path / "out"),
                               "--executor", "process", "--workers", "2", "--no-progress"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    workers: list[int] = []
    while time.time() < deadline and len(workers) < 2:
        time.sleep(0.5)
        workers = [pid for pid in children(parent.pid) if b"spawn" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(workers) == 2, "the workers did not start"
    parent.kill()
    parent.wait()
    deadline = time.time() + 20
    while time.time() < deadline and any(Path(f"/proc/{pid}").exists() for pid in workers):
        time.sleep(0.2)
    alive = [pid for pid in workers if Path(f"/proc/{pid}").exists()]
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, f"workers {alive} outlived their parent"
