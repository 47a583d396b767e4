"""`zpeft export mlflow`: a small results directory logged to a local file store and read back with MlflowClient."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import pytest

from zpeft.cli import main
from zpeft.run.mlflow_export import export_mlflow
from zpeft.run.records import read_records
from zpeft.strategies import STRATEGIES, Strategy, register_strategy

mlflow = pytest.importorskip("mlflow")

FAILURE = "mlflow test strategy fails on purpose"
SUITE = {
    "name": "mlflow-toy", "datasets": [{"name": "toy", "options": {"n_photo": 200, "n_spec": 100, "size": 16}}],
    "backbones": ["cnn-small"], "seeds": [0], "data_fractions": [1.0], "device": "cpu",
    "strategies": ["zero-shot", "head-only", "mlflow-failure"],
    "training": {"base": {"epochs": 2, "batch_size": 32}, "finetune": {"epochs": 2, "batch_size": 32}},
    "evaluation": {"n_boot": 20},
}


@dataclass(frozen=True)
class _Failure(Strategy):
    def prepare(self, model):
        raise RuntimeError(FAILURE)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """zero-shot, head-only and a failing strategy on a small toy survey (about 5 s on one CPU thread)."""
    from zpeft.run.runner import run_suite
    from zpeft.run.suite import parse_suite

    out = tmp_path_factory.mktemp("mlflow") / "results"
    register_strategy("mlflow-failure")(_Failure)
    try:
        run_suite(parse_suite(SUITE, source="tests/test_mlflow_export.py"), out, progress=False)
    finally:
        STRATEGIES.remove("mlflow-failure")
    return out


def _runs(client, experiment_id):
    return {r.data.tags["run_id"]: r for r in client.search_runs([experiment_id])}


def test_every_record_is_one_mlflow_run_and_exporting_again_adds_none(results, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses file: stores without it
    uri = f"file:{tmp_path / 'mlruns'}"
    records = {r.run_id: r for r in read_records(results)}
    summary = export_mlflow(results, tracking_uri=uri, experiment="toy")
    assert sorted(summary.created) == sorted(records) and not summary.skipped

    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    runs = _runs(client, summary.experiment_id)
    assert runs.keys() == records.keys()
    ok = next(r for r in records.values() if r.strategy == "head-only")
    logged = runs[ok.run_id].data
    assert logged.metrics["spec.label.all.sigma_nmad"] == pytest.approx(ok.metrics["spec"]["label"]["all"]["sigma_nmad"])
    assert logged.metrics["trainable_params"] == ok.trainable_params > 0
    assert logged.params["strategy"] == "head-only" and logged.params["lr"] == str(ok.train_settings["lr"])
    assert logged.params["seed"] == "0" and logged.tags["status"] == "ok"
    assert logged.tags["config_hash"] == ok.config_hash
    history = client.get_metric_history(runs[ok.run_id].info.run_id, "val_loss")
    # a fine-tune's history starts with epoch 0, its validated start
    assert [m.step for m in history] == [h["epoch"] for h in ok.history] and len(history) == 3
    assert [m.value for m in history] == pytest.approx([h["val_loss"] for h in ok.history])
    artifacts = {f.path for f in client.list_artifacts(runs[ok.run_id].info.run_id, "catalogues")}
    assert "catalogues/catalogue-spec.fits" in artifacts and len(artifacts) == 3

    failed = next(r for r in records.values() if r.status == "failed")
    failed_run = runs[failed.run_id]
    assert failed_run.data.tags["status"] == "failed" and FAILURE in failed_run.data.tags["error"]
    assert failed_run.info.status == "FAILED" and "train_seconds" not in failed_run.data.metrics

    again = export_mlflow(results, tracking_uri=uri, experiment="toy")
    assert sorted(again.skipped) == sorted(records) and not again.created and not again.replaced
    assert len(client.search_runs([summary.experiment_id])) == len(records)


def test_a_changed_record_replaces_its_run_and_a_report_gets_one_run(results, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = f"file:{tmp_path / 'mlruns'}"
    report = tmp_path / "report"
    report.mkdir()
    (report / "results.csv").write_text("label,sigma_nmad\n")
    first = export_mlflow(results, tracking_uri=uri, report_dir=report)
    record = read_records(results)[0]
    path = results / f"{record.run_id}.json"
    text = path.read_text()
    try:
        path.write_text(text.replace(record.created_at, "2000-01-01T00:00:00+00:00"))
        second = export_mlflow(results, tracking_uri=uri, report_dir=report)
    finally:
        path.write_text(text)
    assert second.replaced == [record.run_id] and len(second.skipped) == len(first.created) - 1
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    runs = client.search_runs([first.experiment_id])
    assert len(runs) == len(first.created) + 1  # the records and one report run
    assert [f.path for f in client.list_artifacts(second.report_run, "report")] == ["report/results.csv"]


def test_cli_exports_and_rejects_a_missing_results_dir(results, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = f"file:{tmp_path / 'mlruns'}"
    assert main(["export", "mlflow", str(results), "--tracking-uri", uri, "--experiment", "cli"]) == 0
    assert "3 runs logged" in capsys.readouterr().out
    assert main(["export", "mlflow", str(tmp_path / "missing"), "--tracking-uri", uri]) == 2
    assert "no such results directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["export", str(results / "some-run")])  # the model export still needs -o
    assert exit_.value.code == 2


def test_without_mlflow_the_error_says_what_to_install(results, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` now raises ImportError
    assert main(["export", "mlflow", str(results)]) == 2
    assert "pip install 'zpeft[mlflow]'" in capsys.readouterr().err
