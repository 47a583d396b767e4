"""The Ray executor on a local Ray instance: the same numbers as the local executor; a killed task is a failed run."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from zpeft.report.tables import results_table
from zpeft.run.records import read_records
from zpeft.run.runner import run_suite
from zpeft.run.suite import parse_suite

ray = pytest.importorskip("ray")

SUITE = {"name": "ray", "datasets": [{"name": "toy", "options": {"n_photo": 300, "n_spec": 150}}],
         "backbones": ["cnn-small"], "device": "cpu",
         "strategies": ["zero-shot", "head-only", {"name": "lora", "grid": {"rank": [2]}}, "full", "combined"],
         "training": {"base": {"epochs": 2, "batch_size": 32}, "finetune": {"epochs": 2, "batch_size": 32}},
         "evaluation": {"n_boot": 10}}
METRICS = ["bias", "sigma_nmad", "outlier_015", "rmse", "sigma_nmad_lo", "sigma_nmad_hi"]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _table(out: Path) -> pd.DataFrame:
    keys = ["label", "test_set", "reference", "range"]
    return results_table(read_records(out)).sort_values(keys).set_index(keys)[METRICS]


def test_ray_gives_the_local_executors_numbers(tmp_path, local_ray):
    suite = parse_suite(SUITE)
    assert run_suite(suite, tmp_path / "local", progress=False).ok == 5
    assert run_suite(suite, tmp_path / "ray", executor="ray", progress=False).ok == 5
    pd.testing.assert_frame_equal(_table(tmp_path / "local"), _table(tmp_path / "ray"))


def _task_processes(name: str) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if cmdline.read_bytes().startswith(f"ray::{name}".encode()):
                found.append(int(cmdline.parent.name))
        except OSError:
            pass
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds Ray's task processes through /proc")
def test_a_killed_ray_task_is_a_failed_run_and_the_suite_finishes(tmp_path, local_ray):
    suite = parse_suite({**SUITE, "training": {"base": {"epochs": 2, "batch_size": 32},
                                               "finetune": {"epochs": 40, "batch_size": 32, "patience": 40}}})
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.update(
        summary=run_suite(suite, tmp_path, executor="ray", progress=False)))
    runner.start()
    deadline, victims = time.time() + 120, []
    while time.time() < deadline and not victims:
        time.sleep(0.2)
        if list(tmp_path.glob("*.preds.npz")):  # the base model is trained and runs are under way
            victims = _task_processes("_run_after_base")
    assert victims, "no running Ray task found"
    os.kill(victims[0], signal.SIGKILL)
    runner.join(timeout=300)
    summary = outcome["summary"]
    assert summary.ok + summary.failed == summary.planned == 5 and summary.failed >= 1
    failed = [r for r in read_records(tmp_path) if r.status == "failed"]
    assert all("the Ray task of this run died" in r.error for r in failed)
