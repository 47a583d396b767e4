"""Run a suite: plan its runs, skip those already recorded, execute the rest, summarise.

A run whose record exists with status ok and the same config hash is skipped, so running a
suite again resumes it; failed runs are retried. The plan (every run id and config) goes
beside the records (`run.layout`), so a report can tell this suite's records from older ones.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
from tqdm.auto import tqdm

from zpeft.checksum import matches
from zpeft.run.atomic import atomic_write_text, remove_stale_temporaries
from zpeft.run.basestore import BaseStore
from zpeft.run.execute import RunContext, load_dataset, meta_hash
from zpeft.run.executors import run_pending, run_threads
from zpeft.run.layout import ResultsLayout
from zpeft.run.outputs import outputs_intact
from zpeft.run.plan import PlannedRun, expand, plan_run
from zpeft.run.pretrained import check_backbones
from zpeft.run.records import RunRecord
from zpeft.run.suite import Suite, SuiteError
from zpeft.training.device import cpu_name, resolve_device


@dataclass
class Summary:
    """What an invocation did: counts, failures and where the records are."""

    suite: str
    out: Path
    planned: int
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    stale: int = 0  # records in `out` that are not part of this plan (older configs, other suites)
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (run id, last line of the error)
    run_ids: list[str] = field(default_factory=list)  # every run of the plan, done now or before
    removed_temporaries: int = 0  # half-written files of killed processes, removed before starting

    def text(self) -> str:
        lines = [f"suite {self.suite}: {self.planned} runs: {self.ok} ok, {self.failed} failed, "
                 f"{self.skipped} skipped (already recorded) in {self.seconds:.1f} s; records in {self.out}"]
        if self.stale:
            lines.append(f"  {self.stale} other record(s) in {self.out} are not part of this plan "
                         f"(see {ResultsLayout(self.out).plan} for the current run ids)")
        if self.removed_temporaries:
            lines.append(f"  removed {self.removed_temporaries} temporary file(s) left by killed processes")
        lines += [f"  failed: {run_id}: {error}" for run_id, error in self.failures]
        return "\n".join(lines)


def plan_suite(suite: Suite, progress: bool = True) -> list[PlannedRun]:
    """Every run of the suite with its config hash; loads each dataset once to fingerprint its meta."""
    runs = expand(suite)
    hashes = {}
    for spec in tqdm(suite.datasets, desc="datasets", disable=not progress or len(suite.datasets) < 2, leave=False):
        try:
            pair = load_dataset(spec)
        except (KeyError, TypeError, ValueError, OSError) as err:
            raise SuiteError(f"suite {suite.source or suite.name}: dataset {spec.label!r} does not load: {err}") from err
        height, width = pair.photo["train"].images.shape[-2:]
        if suite.crop is not None and suite.crop > min(height, width):
            raise SuiteError(f"suite {suite.source or suite.name}: crop {suite.crop} is larger than dataset "
                             f"{spec.label!r}'s {height}x{width} cutouts")
        hashes[spec.key()] = meta_hash(pair)
        check_backbones(suite, pair.photo["train"].images.shape[1],
                        pair.photo["train"].images.cropped_shape(suite.crop)[-1], spec.label)
    return [plan_run(run, hashes[run.dataset.key()]) for run in runs]


def previous_status(out: Path, planned: PlannedRun, device: str | None = None, threads: int | None = None) -> str:
    """'ok' or 'failed' for a run recorded under the same config hash, else 'new'.

    A record made on another kind of device (CPU vs CUDA: fp32 vs bf16, other timings) does not
    count as done when `device` names a kind; on the CPU, nor does one made with another torch
    thread count (`threads`), since float reductions, and so the numbers, depend on it: resuming
    a suite with another executor reruns its runs instead of mixing two sets of results.
    """
    path = ResultsLayout(out).record(planned.run_id)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):  # unreadable or half-written: run it again
        return "new"
    if record.get("config_hash") != planned.config_hash:
        return "new"
    if record.get("status") == "ok" and not matches(ResultsLayout(out).predictions(planned.run_id),
                                                    record.get("predictions_sha256")):
        return "new"  # its predictions are missing, truncated or altered: recompute, never reuse
    if record.get("status") == "ok" and not outputs_intact(out, record.get("outputs")):
        return "new"  # its weights or catalogues are missing or damaged (or it predates them): recompute
    if device in ("cpu", "cuda") and record.get("status") == "ok":
        recorded = record.get("device", "")
        if _device_kind(recorded) != device or (device == "cpu" and threads and recorded != cpu_name(threads)):
            return "new"
    return "ok" if record.get("status") == "ok" else "failed"


def _device_kind(recorded: str) -> str:
    """'cpu' for records made on a CPU ('cpu (2 threads)'), else 'cuda' (records name the card)."""
    return "cpu" if recorded.startswith("cpu") else "cuda"


def run_suite(suite: Suite, out: str | Path, *, device: str | None = None, executor: str = "local",
              workers: int | None = None, progress: bool = True) -> Summary:
    """Execute every run of `suite` not yet recorded ok in `out`; failures are recorded and the suite goes on."""
    return run_plan(suite.name, suite.source, plan_suite(suite, progress=progress), out,
                    device=device or suite.device, executor=executor, workers=workers, progress=progress)


def run_plan(name: str, source: str, planned: list[PlannedRun], out: str | Path, *, device: str = "auto",
             executor: str = "local", workers: int | None = None, progress: bool = True) -> Summary:
    """Execute the planned runs not yet recorded ok in `out` (one suite's, or several suites' together).

    The progress line counts runs and estimates the time left from the work done so far, each run
    weighted by the galaxies it trains on (its base model's share included), not by run count.
    """
    start = time.perf_counter()
    out = Path(out)
    if executor != "ray":
        device = str(resolve_device(device))  # fail now, not in every run, when CUDA is asked for but absent
    kind = torch.device(device).type if executor != "ray" else None
    threads = run_threads(executor, workers)
    pending = [p for p in planned if previous_status(out, p, kind, threads) != "ok"]
    removed = remove_stale_temporaries(out) if out.is_dir() else []
    write_plan(out, name, source, planned)
    summary = Summary(name, out, len(planned), skipped=len(planned) - len(pending),
                      stale=len(stale_records(out, planned)), run_ids=[p.run_id for p in planned],
                      removed_temporaries=len(removed))
    weights = work_weights(pending, ResultsLayout(out).bases)
    bar = tqdm(total=sum(weights.values()) or 1.0, desc=f"suite {name}", disable=not progress,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed} elapsed, ~{remaining} left{postfix}]")
    bar.set_postfix_str(f"{summary.skipped}/{len(planned)} runs done before")

    def done(record: RunRecord) -> None:
        if record.status == "ok":
            summary.ok += 1
        else:
            summary.failed += 1
            lines = (record.error or "").strip().splitlines()
            summary.failures.append((record.run_id, lines[-1] if lines else ""))
        bar.update(min(weights.get(record.run_id, 0.0), bar.total - bar.n))  # float sums: never past the total
        bar.set_postfix_str(f"{summary.ok + summary.failed + summary.skipped}/{len(planned)} runs, "
                            f"{summary.failed} failed, {summary.skipped} skipped")

    try:
        run_pending(pending, RunContext(out, name, device, progress, threads), done, executor, workers)
    finally:
        bar.close()
    summary.seconds = time.perf_counter() - start
    return summary


def work_weights(pending: list[PlannedRun], bases_dir: Path) -> dict[str, float]:
    """Run id -> its share of the work to do, in training galaxies per epoch: its own training set, plus an equal
    share of its base model's photo-z set when that base is still to be trained; a run that trains nothing counts
    as 1 % of the spec-z training set (it only predicts). Epoch counts are unknown ahead, so they are left out."""
    sizes: dict[tuple, dict[str, int]] = {}
    base_users: dict[str, list[str]] = {}
    store = BaseStore(bases_dir)
    weights = {}
    for planned in pending:
        run = planned.run
        key = run.dataset.key()
        if key not in sizes:
            pair = load_dataset(run.dataset)
            sizes[key] = {"photo": len(pair.photo["train"]), "spec": len(pair.spec["train"])}
        n = sizes[key]
        kind = run.strategy.trains_on
        spec = run.data_fraction * n["spec"]
        weights[planned.run_id] = {"spec": spec, "combined": n["photo"] + spec}.get(kind, 0.01 * n["spec"])
        if planned.base_hash and not store.has(planned.base_hash):
            base_users.setdefault(planned.base_hash, []).append(planned.run_id)
            weights.setdefault(f"base:{planned.base_hash}", n["photo"])
    for digest, users in base_users.items():
        share = weights.pop(f"base:{digest}") / len(users)
        for run_id in users:
            weights[run_id] += share
    return weights


def dry_run(suite: Suite, out: str | Path) -> list[tuple[str, PlannedRun]]:
    """(what would happen, run) for every run: `run` (new), `retry` (failed before) or `skip` (recorded ok)."""
    actions = {"new": "run", "failed": "retry", "ok": "skip"}
    return [(actions[previous_status(Path(out), p)], p) for p in plan_suite(suite, progress=False)]


def describe_dry_run(plan: list[tuple[str, PlannedRun]], out: str | Path) -> str:
    """The dry-run listing: one line per run, then base models and counts."""
    store = BaseStore(ResultsLayout(out).bases)
    lines = [f"{action:<5} {p.run_id}" for action, p in plan]
    pending_bases = {p.base_hash for action, p in plan if action != "skip" and p.base_hash}
    to_train = sorted(h for h in pending_bases if not store.has(h))
    counts = {a: sum(1 for action, _ in plan if action == a) for a in ("run", "retry", "skip")}
    lines.append(f"{len(plan)} runs: {counts['run']} to run, {counts['retry']} to retry (failed before), "
                 f"{counts['skip']} to skip (recorded ok); base models: {len(pending_bases) - len(to_train)} on disk, "
                 f"{len(to_train)} to train")
    return "\n".join(lines)


def write_plan(out: Path, name: str, source: str, planned: list[PlannedRun]) -> Path:
    """The plan file: the suite and every planned run id with its config (not in the records' glob)."""
    path = ResultsLayout(out).plan
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({
        "suite": name, "source": source, "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "runs": [{"run_id": p.run_id, "config_hash": p.config_hash, "config": p.config} for p in planned],
    }, indent=1)
    return atomic_write_text(path, text)


def stale_records(out: Path, planned: list[PlannedRun]) -> list[Path]:
    """Record files in `out` whose run id this plan does not contain."""
    current = {p.run_id for p in planned}
    layout = ResultsLayout(out)
    return [p for p in layout.record_files() if layout.run_id_of(p) not in current]
