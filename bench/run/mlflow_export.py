"""`zpeft export mlflow`: every run record of a results directory as one MLflow run, without duplicates.

Each record becomes a run tagged with its `run_id`: settings as parameters, scores, costs and the
per-epoch losses as metrics, status and error as tags, its FITS catalogues as artifacts. Exporting
again looks runs up by that tag: an unchanged record is skipped, a changed one (a failed run since
redone, say) replaces its old MLflow run. MLflow is imported only here, when the export runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from zpeft.run.records import RunRecord, read_records

DEFAULT_EXPERIMENT = "zpeft"
COST_FIELDS = ("trainable_params", "total_params", "train_seconds", "base_train_seconds", "epochs", "best_epoch",
               "images_seen", "images_per_second", "peak_memory_mb", "batch_size", "oom_retries")
IDENTITY_PARAMS = ("suite", "dataset", "backbone", "strategy", "label", "seed", "data_fraction")
SETTING_PARAMS = ("memory_kind", "data_storage", "train_data_on", "step_mode", "device")
CATALOGUE_SUFFIX = ".fits"
REPORT_TAG = "report_of"  # the report run's tag: the resolved results directory it was built from
STORE_HINT = ("mlflow-skinny logs to a tracking server (http://...) or a file: store with MLFLOW_ALLOW_FILE_STORE=true; "
              "a sqlite: store needs the full `mlflow` package")
_PARAM_MAX = 6000  # MLflow's longest parameter value
_BATCH = {"metrics": 1000, "params": 100, "tags": 100}  # MLflow's log_batch limits


class MlflowExportError(Exception):
    """Bad input for the MLflow export (missing directory, no records, MLflow absent or refusing the store)."""


@dataclass
class MlflowExportSummary:
    """What an export did: run ids logged anew, replaced (record changed) and skipped (already there)."""

    experiment_id: str
    created: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    report_run: str | None = None  # the MLflow run id holding the report's files, when one was given


def export_mlflow(results_dir: str | Path, tracking_uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT,
                  report_dir: str | Path | None = None) -> MlflowExportSummary:
    """Log every record of `results_dir` into `experiment` at `tracking_uri` (None: MLflow's own default)."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise MlflowExportError(f"{results_dir}: no such results directory")
    if report_dir is not None and not Path(report_dir).is_dir():
        raise MlflowExportError(f"{report_dir}: no such report directory")
    records = read_records(results_dir)
    if not records:
        raise MlflowExportError(f"{results_dir}: no run records (a results directory of `zpeft run`)")
    for record in records:
        _catalogues(results_dir, record)  # every listed catalogue must exist before anything is logged

    mlflow = _import_mlflow()
    try:
        client = mlflow.tracking.MlflowClient(tracking_uri=tracking_uri)
        experiment_id = _experiment_id(client, experiment)
    except mlflow.exceptions.MlflowException as err:
        raise MlflowExportError(f"MLflow tracking store {tracking_uri or mlflow.get_tracking_uri()!r}: "
                                f"{err.message.strip()} ({STORE_HINT})") from None

    summary = MlflowExportSummary(experiment_id)
    existing = _existing_runs(client, experiment_id)
    for record in records:
        old = existing.get(record.run_id)
        if old is not None and old.data.tags.get("fingerprint") == _fingerprint(record):
            summary.skipped.append(record.run_id)
            continue
        if old is not None:
            client.delete_run(old.info.run_id)
        _log_record(client, experiment_id, results_dir, record)
        (summary.replaced if old is not None else summary.created).append(record.run_id)
    if report_dir is not None:
        summary.report_run = _log_report(client, experiment_id, results_dir, Path(report_dir))
    return summary


def record_params(record: RunRecord) -> dict[str, str]:
    """A record's settings as MLflow parameters: identity, `params.*` of the strategy, `train.*` settings, `lr`."""
    out = {name: getattr(record, name) for name in IDENTITY_PARAMS + SETTING_PARAMS}
    out.update({f"params.{k}": v for k, v in record.params.items()})
    out.update({f"train.{k}": v for k, v in record.train_settings.items()})
    if "lr" in record.train_settings:
        out["lr"] = record.train_settings["lr"]
    return {k: str(v)[:_PARAM_MAX] for k, v in out.items() if v is not None and v != ""}


def record_metrics(record: RunRecord) -> dict[str, float]:
    """Scores flattened to `test set.reference.range.metric` (e.g. `spec.label.all.sigma_nmad`), plus costs.

    None and NaN scores are left out; costs only for ok runs (a failed run's zeros were never measured).
    """
    out = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif _finite(value):
            out[prefix] = float(value)

    walk("", record.metrics)
    if record.status == "ok":
        out.update({name: float(getattr(record, name)) for name in COST_FIELDS if _finite(getattr(record, name))})
    return out


def record_history(record: RunRecord) -> list[tuple[str, float, int]]:
    """(metric, value, epoch) of each numeric history entry (`train_loss`, `val_loss`) but the epoch itself."""
    out = []
    for i, entry in enumerate(record.history):
        step = int(entry.get("epoch", i + 1))
        out += [(k, float(v), step) for k, v in entry.items() if k != "epoch" and _finite(v)]
    return out


def _log_record(client, experiment_id: str, results_dir: Path, record: RunRecord) -> str:
    from mlflow.entities import Metric, Param

    start = _millis(record.created_at)
    tags = {"run_id": record.run_id, "config_hash": record.config_hash, "status": record.status,
            "fingerprint": _fingerprint(record), "results_dir": str(results_dir.resolve())}
    if record.error:
        tags["error"] = record.error[:_PARAM_MAX]
    run = client.create_run(experiment_id, start_time=start, tags=tags, run_name=record.run_id)
    run_id = run.info.run_id
    params = [Param(k, v) for k, v in record_params(record).items()]
    metrics = [Metric(k, v, start, 0) for k, v in record_metrics(record).items()]
    metrics += [Metric(k, v, start, step) for k, v, step in record_history(record)]
    for i in range(0, len(params), _BATCH["params"]):
        client.log_batch(run_id, params=params[i:i + _BATCH["params"]])
    for i in range(0, len(metrics), _BATCH["metrics"]):
        client.log_batch(run_id, metrics=metrics[i:i + _BATCH["metrics"]])
    for path in _catalogues(results_dir, record):
        client.log_artifact(run_id, str(path), artifact_path="catalogues")
    client.set_terminated(run_id, status="FINISHED" if record.status == "ok" else "FAILED")
    return run_id


def _log_report(client, experiment_id: str, results_dir: Path, report_dir: Path) -> str:
    """The report's files in one run of their own, tagged with the results directory; an older one is replaced."""
    key = str(results_dir.resolve())
    for old in _search(client, experiment_id):
        if old.data.tags.get(REPORT_TAG) == key:
            client.delete_run(old.info.run_id)
    run = client.create_run(experiment_id, tags={REPORT_TAG: key, "status": "report"},
                            run_name=f"report {results_dir.name}")
    client.log_artifacts(run.info.run_id, str(report_dir), artifact_path="report")
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def _catalogues(results_dir: Path, record: RunRecord) -> list[Path]:
    paths = [results_dir / rel for rel in sorted(record.outputs) if rel.endswith(CATALOGUE_SUFFIX)]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise MlflowExportError(f"run {record.run_id}: catalogue files listed in its record are missing: "
                                f"{', '.join(missing)} (run the suite again to rewrite them)")
    return paths


def _existing_runs(client, experiment_id: str) -> dict:
    """Active MLflow runs of the experiment by their `run_id` tag."""
    return {run.data.tags["run_id"]: run for run in _search(client, experiment_id) if "run_id" in run.data.tags}


def _search(client, experiment_id: str) -> list:
    """Every active run of the experiment, page by page."""
    out, token = [], None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        out += list(page)
        token = page.token
        if not token:
            return out


def _experiment_id(client, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(name)
    if experiment.lifecycle_stage != "active":
        raise MlflowExportError(f"MLflow experiment {name!r} is deleted: restore it or choose another name")
    return experiment.experiment_id


def _fingerprint(record: RunRecord) -> str:
    """What makes a record the same one again: its config, status, predictions and write time."""
    return f"{record.config_hash}:{record.status}:{record.predictions_sha256[:16]}:{record.created_at}"


def _millis(iso: str) -> int:
    try:
        moment = datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        moment = datetime.now(timezone.utc)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _import_mlflow():
    try:
        import mlflow
        import mlflow.tracking  # noqa: F401
    except ImportError:
        raise MlflowExportError("MLflow is not installed: pip install 'zpeft[mlflow]'") from None
    return mlflow
