"""Fault injection on the files a results directory reuses: each is verified, reported by name, recomputed."""

from __future__ import annotations

import pytest

from zpeft.report.build import build_report
from zpeft.run.basestore import BaseStore
from zpeft.run.layout import ResultsLayout
from zpeft.run.records import read_records
from zpeft.run.runner import run_suite
from zpeft.run.suite import parse_suite

SUITE = {"name": "corrupt", "datasets": [{"name": "toy", "options": {"n_photo": 300, "n_spec": 150}}],
         "backbones": ["cnn-small"], "strategies": ["zero-shot", "head-only"], "device": "cpu",
         "training": {"base": {"epochs": 2, "batch_size": 32}, "finetune": {"epochs": 2, "batch_size": 32}},
         "evaluation": {"n_boot": 10}}


@pytest.fixture
def done(tmp_path):
    """A finished two-run suite: (suite, results directory, layout)."""
    suite = parse_suite(SUITE)
    assert run_suite(suite, tmp_path, progress=False).ok == 2
    return suite, tmp_path, ResultsLayout(tmp_path)


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip(path, at: int = -200):
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_truncate, _flip])
def test_damaged_predictions_are_recomputed_and_refused_by_the_report(done, tmp_path_factory, damage):
    suite, out, layout = done
    record = read_records(out)[0]
    damage(layout.predictions(record.run_id))
    report = tmp_path_factory.mktemp("report")
    with pytest.raises(ValueError, match=rf"(?s)1 unreadable file\(s\), nothing written.*{record.run_id}.preds.npz"):
        build_report(out, report / "out", progress=False)
    assert not (report / "out").exists()
    summary = run_suite(suite, out, progress=False)
    assert (summary.ok, summary.skipped) == (1, 1)
    build_report(out, report / "again", progress=False)


@pytest.mark.parametrize("damage", [_truncate, _flip])
def test_damaged_kept_weights_or_catalogues_make_the_run_count_as_not_done(done, damage):
    suite, out, layout = done
    record = next(r for r in read_records(out) if r.strategy == "head-only")
    weights, catalogue = layout.run_dir(record.run_id) / "model.safetensors", layout.catalogue(record.run_id, "photo")
    damage(weights)
    summary = run_suite(suite, out, progress=False)
    assert (summary.ok, summary.skipped) == (1, 1)
    damage(catalogue)
    assert run_suite(suite, out, progress=False).ok == 1
    catalogue.unlink()
    assert run_suite(suite, out, progress=False).ok == 1
    assert run_suite(suite, out, progress=False).skipped == 2


def test_damaged_references_are_written_again(done):
    suite, out, layout = done
    refs = next(out.glob("*.refs.npz"))
    _truncate(refs)
    record = read_records(out)[0]
    layout.record(record.run_id).unlink()  # one run to redo: it writes the references again
    assert run_suite(suite, out, progress=False).ok == 1
    build_report(out, out / "report", progress=False)


@pytest.mark.parametrize("damage", [_truncate, _flip])
def test_a_damaged_base_model_is_trained_again_not_used(done, damage):
    suite, out, layout = done
    store = BaseStore(layout.bases)
    (digest,) = [p.stem for p in layout.bases.glob("*.safetensors")]
    damage(store.weights_path(digest), **({} if damage is _truncate else {"at": -5}))
    assert not store.has(digest)
    with pytest.raises(ValueError, match=rf"base model .*{digest}.safetensors is missing, unreadable or does not "
                                         "match its checksum"):
        store.load(digest)
    bigger = parse_suite({**SUITE, "strategies": ["zero-shot", "head-only", "full"]})
    assert run_suite(bigger, out, progress=False).ok == 1
    assert store.has(digest)


def test_a_truncated_record_is_run_again(done):
    suite, out, layout = done
    _truncate(layout.record(read_records(out)[0].run_id))
    assert run_suite(suite, out, progress=False).ok == 1


def test_an_unreadable_plan_is_named_by_the_report(done):
    _, out, layout = done
    layout.plan.write_text("{not json")
    with pytest.raises(ValueError, match=r"plan .*plan.json is unreadable"):
        build_report(out, out / "report", progress=False)
    assert not (out / "report").exists()
