"""Shared fixtures: small, seeded, CPU-only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from zpeft.run.records import read_records
from zpeft.strategies import STRATEGIES, Strategy, register_strategy


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """One torch thread: test models are tiny and gain nothing from two, and lose a lot when the other core is busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


@pytest.fixture
def images():
    """A batch of five-band 64x64 cutouts."""
    return torch.randn(4, 5, 64, 64)


# --- a results directory made by the real runner on toy data, shared by the report and compare tests -----------

TOY_FAILURE = "toy failure raised by the test fixture's strategy"


@dataclass(frozen=True)
class _ToyFailure(Strategy):
    """A strategy that fails when it prepares a model: registered only while the fixture runs its suite."""

    def prepare(self, model):
        raise RuntimeError(TOY_FAILURE)

TOY_SUITE = {
    "name": "toy", "datasets": [{"name": "toy", "options": {"n_photo": 400, "n_spec": 200, "size": 16}}],
    "backbones": ["cnn-small"], "seeds": [0, 1], "data_fractions": [0.5, 1.0], "device": "cpu",
    "strategies": ["zero-shot", "head-only", {"name": "lora", "grid": {"rank": [2, 4]}}, "full", "combined",
                   "toy-failure"],
    "training": {"base": {"epochs": 5, "batch_size": 32}, "finetune": {"epochs": 2, "batch_size": 32}},
    "evaluation": {"n_boot": 50},
}


@dataclass(frozen=True)
class ToyResults:
    """The toy suite's results directory and its report; `run_id` finds a run by label, seed and fraction."""

    results: Path
    report: Path
    failure: str = TOY_FAILURE  # the error of the failing strategy's runs

    def run_id(self, label: str, seed: int, fraction: float = 1.0) -> str:
        matches = [r.run_id for r in read_records(self.results)
                   if r.label == label and r.seed == seed and r.data_fraction == fraction]
        assert len(matches) == 1, (label, seed, fraction, matches)
        return matches[0]


@pytest.fixture(scope="session")
def toy(tmp_path_factory) -> ToyResults:
    """Two seeds x (zero-shot, head-only, lora r2/r4, full, combined, a failing strategy) x fractions 0.5 and 1."""
    from zpeft.report.build import build_report
    from zpeft.run.runner import run_suite
    from zpeft.run.suite import parse_suite

    root = tmp_path_factory.mktemp("toy")
    register_strategy("toy-failure")(_ToyFailure)
    try:
        run_suite(parse_suite(TOY_SUITE, source="tests/conftest.py"), root / "results", progress=False)
    finally:
        STRATEGIES.remove("toy-failure")
    report = build_report(root / "results", root / "report", n_boot=200, progress=False).parent
    return ToyResults(root / "results", report)


# --- the simulated `tiny` survey, in a survey cache of the test module's own ------------------------------------


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """An empty survey cache (ZPEFT_CACHE) for one test module, so its simulations start from nothing."""
    path = tmp_path_factory.mktemp("zpeft-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ZPEFT_CACHE", str(path))
        yield path


@pytest.fixture(scope="module")
def tiny(cache):
    """The `tiny` preset simulated into the module's cache (needs the `sim` extra)."""
    from zpeft.simsurvey import simulate

    return simulate("tiny", seed=0, workers=2, progress=False)
