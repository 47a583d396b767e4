"""Images read from HDF5 batch by batch give what in-memory images give: same batches, same order, same numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import zpeft.data.registry
from zpeft.conventions import SPLITS
from zpeft.data.registry import read_pair
from zpeft.data.synthetic import write_synthetic_pair
from zpeft.run.execute import clear_caches
from zpeft.run.prepared import prepare_data, with_fraction
from zpeft.run.records import read_records
from zpeft.run.runner import run_suite
from zpeft.run.suite import parse_suite
from zpeft.training.batches import batches
from zpeft.training.loop import predict, train
from zpeft.training.settings import TrainSettings

CPU = torch.device("cpu")
SETS = ("photo", "spec", "combined")


@pytest.fixture(scope="module")
def pair_dir(tmp_path_factory):
    return write_synthetic_pair(tmp_path_factory.mktemp("pair"), 500, size=16, seed=2, chunk=64, progress=False)


@pytest.fixture(scope="module")
def both(pair_dir):
    memory, stream = read_pair(pair_dir, storage="memory"), read_pair(pair_dir, storage="stream")
    return prepare_data(memory, crop=12), prepare_data(stream, crop=12)


def test_the_two_storages_hold_the_images_where_they_say(both):
    memory, stream = both
    assert memory.storage == "memory" and stream.storage == "stream"
    assert all(not s.images.in_memory for s in stream.sets.values())
    assert memory.preprocessor == stream.preprocessor  # fitted on the same pixels


def test_streamed_batches_equal_in_memory_batches_in_every_set_and_order(both):
    memory, stream = both
    order = torch.randperm(len(memory.sets["combined", "train"]), generator=torch.Generator().manual_seed(0))
    for kind in SETS:
        for split in SPLITS:
            a, b = memory.inputs(kind, split), stream.inputs(kind, split)
            rows = order[order < len(a)]
            got_a, got_b = list(batches(a, rows, 8, CPU)), list(batches(b, rows, 8, CPU))
            assert len(got_a) == len(got_b) == len(rows) // 8 and got_a[0][0].shape[-1] == 12
            for (xa, ya), (xb, yb) in zip(got_a, got_b, strict=True):
                assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_a_data_fraction_of_streamed_images_is_the_same_rows(both):
    memory, stream = (with_fraction(d, 0.3, seed=1) for d in both)
    for kind in ("spec", "combined"):
        a, b = memory.sets[kind, "train"], stream.sets[kind, "train"]
        assert np.array_equal(a.ids, b.ids)
        assert np.array_equal(a.images.read(), b.images.read())


def test_training_and_prediction_from_streamed_images_give_the_same_numbers(both):
    from zpeft import backbones

    settings = TrainSettings(epochs=2, batch_size=32, lr=2e-3)
    out = []
    for data in both:
        torch.manual_seed(0)
        model = backbones.create("cnn-small", img_size=12)
        result = train(model, data.inputs("spec", "train"), data.inputs("spec", "val"), settings, device=CPU, seed=4,
                       bn_frozen=False, progress=False)
        out.append((result, predict(model, data.inputs("combined", "test"), CPU, batch_size=50)))
    (r_mem, p_mem), (r_stream, p_stream) = out
    assert r_mem.history == r_stream.history
    assert r_mem.data_on == "memory" and r_stream.data_on == "stream"
    assert np.array_equal(p_mem, p_stream)


def test_auto_streams_when_the_images_would_not_fit_and_the_record_says_so(pair_dir, tmp_path, monkeypatch):
    assert read_pair(pair_dir).spec["train"].images.in_memory  # small enough: loaded
    monkeypatch.setattr(zpeft.data.registry, "available_memory", lambda: 1000)  # bytes: far too little
    assert not read_pair(pair_dir).spec["train"].images.in_memory
    suite = parse_suite({"name": "stream-test", "datasets": [str(pair_dir)], "backbones": ["cnn-small"],
                         "strategies": ["zero-shot", "head-only"], "device": "cpu", "evaluation": {"n_boot": 5},
                         "training": {"base": {"epochs": 1, "batch_size": 64}, "finetune": {"epochs": 1}}},
                        source="test")
    clear_caches()
    try:
        run_suite(suite, tmp_path / "out", progress=False)
    finally:
        clear_caches()
    records = read_records(tmp_path / "out")
    assert [r.status for r in records] == ["ok", "ok"]
    assert {r.data_storage for r in records} == {"stream"}
    assert {r.train_data_on for r in records if r.strategy == "head-only"} == {"stream"}


def test_read_pair_refuses_an_unknown_storage(pair_dir):
    with pytest.raises(ValueError, match="storage must be one of auto, memory, stream"):
        read_pair(pair_dir, storage="disk")


def test_the_storage_option_does_not_change_a_run_identity(pair_dir):
    from zpeft.run.plan import expand, plan_run

    def hashes(options):
        suite = parse_suite({"name": "ids", "datasets": [{"name": str(pair_dir), "options": options}],
                             "backbones": ["cnn-small"], "strategies": ["zero-shot", "head-only"]}, source="test")
        return [plan_run(run, "meta").config_hash for run in expand(suite)]

    assert hashes({"storage": "stream"}) == hashes({}) != hashes({"max_rows": 50})


def test_data_synthetic_writes_a_readable_pair_of_the_size_asked(tmp_path, capsys):
    from zpeft.cli import main

    assert main(["data", "synthetic", "--galaxies", "300", "--size", "8", "-o", str(tmp_path / "pair")]) == 0
    pair = read_pair(tmp_path / "pair")
    sizes = {kind: sum(len(s) for s in splits.values()) for kind, splits in (("photo", pair.photo),
                                                                           ("spec", pair.spec))}
    assert sizes == {"photo": 90, "spec": 210} and pair.spec["train"].images.dtype == np.float16
    assert main(["data", "synthetic", "--galaxies", "5", "-o", str(tmp_path / "small")]) == 2
    assert "need at least 100 galaxies" in capsys.readouterr().err
