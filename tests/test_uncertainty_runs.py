"""Error bars in runs: calibrated on the run's spec-z validation set only, recorded, catalogued and exported."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from zpeft.conventions import TEST_SETS
from zpeft.run.layout import ResultsLayout
from zpeft.run.outputs import read_catalogue
from zpeft.run.records import read_predictions, read_records
from zpeft.uncertainty import LEVELS, PZ_LEVELS, Calibration

CPU = torch.device("cpu")
INTERVAL_COLUMNS = ["z_lo_68", "z_hi_68", "z_lo_95", "z_hi_95", "z_quantiles"]


@pytest.fixture(scope="module")
def prepared():
    from zpeft.data.registry import load_pair
    from zpeft.run.prepared import prepare_data

    return prepare_data(load_pair("toy", n_photo=400, n_spec=2000, size=16))


def test_error_bars_read_no_test_label(prepared):
    """Swapping every test label (and true z) changes the scores but not one interval or calibration residual."""
    from zpeft import backbones
    from zpeft.run.cell import error_bars, predict_tests
    from zpeft.run.prepared import PreparedData
    from zpeft.uncertainty.runs import catalogue_columns, preferred

    torch.manual_seed(0)
    model = backbones.create("cnn-small", in_chans=prepared.in_chans, img_size=prepared.img_size).eval()
    predictions = predict_tests(model, prepared, device=CPU)
    rng = np.random.default_rng(0)
    swapped_sets = dict(prepared.sets)
    for kind in TEST_SETS:
        galaxies = prepared.sets[kind, "test"]
        swapped_sets[kind, "test"] = replace(galaxies, z=rng.permutation(galaxies.z),
                                             z_true=rng.permutation(galaxies.z_true))
    swapped = PreparedData(prepared.pair, prepared.preprocessor, swapped_sets)
    cal, scores = error_bars(model, prepared, prepared, predictions, device=CPU, seed=0)
    cal_swapped, scores_swapped = error_bars(model, prepared, swapped, predictions, device=CPU, seed=0)
    assert set(cal) == {"marginal", "mondrian"} and cal["mondrian"].mondrian
    for name in cal:
        assert cal[name].edges == cal_swapped[name].edges
        for a, b in zip(cal[name].residuals, cal_swapped[name].residuals):
            np.testing.assert_array_equal(a, b)
    for kind in TEST_SETS:
        a = catalogue_columns(preferred(cal, prepared.sets[kind, "test"])[1], prepared.sets[kind, "test"],
                              predictions[kind])
        b = catalogue_columns(preferred(cal_swapped, swapped.sets[kind, "test"])[1], swapped.sets[kind, "test"],
                              predictions[kind])
        for column in INTERVAL_COLUMNS:
            np.testing.assert_array_equal(a[column], b[column])
        block, other = scores[kind]["mondrian"]["label"], scores_swapped[kind]["mondrian"]["label"]
        assert block["width_95"] == other["width_95"] and block["crps"] != other["crps"]


def test_the_export_formula_is_the_calibrations_interval():
    """README.txt of an export gives the interval by index arithmetic on the residuals: it must match."""
    rng = np.random.default_rng(1)
    cal = Calibration.fit(rng.uniform(0, 2, 333), rng.uniform(0, 2, 333))
    z_pred = rng.uniform(0, 2, 20)
    r, m = cal.residuals[0], len(cal.residuals[0])
    for c in LEVELS:
        r_lo, r_hi = r[math.floor((1 - c) / 2 * (m + 1)) - 1], r[math.ceil((1 + c) / 2 * (m + 1)) - 1]
        lo, hi = cal.interval(z_pred, c)
        np.testing.assert_allclose(lo, np.clip((z_pred + r_lo) / (1 - r_lo), 0, 6), atol=1e-12)
        np.testing.assert_allclose(hi, np.clip((z_pred + r_hi) / (1 - r_hi), 0, 6), atol=1e-12)


def test_every_ok_run_records_scores_and_catalogues_its_error_bars(toy):
    layout = ResultsLayout(toy.results)
    records = [r for r in read_records(toy.results) if r.status == "ok"]
    for record in records:
        for kind in TEST_SETS:
            block = record.uncertainty[kind]["mondrian"]["label"]
            assert set(block) >= {"coverage_68", "coverage_95", "width_68", "pit_ks", "crps", "pit_hist", "mag_bins"}
            assert 0 <= block["coverage_68"] <= block["coverage_95"] <= 1
            assert "true" in record.uncertainty[kind]["marginal"]
            table = read_catalogue(layout.catalogue(record.run_id, kind))
            assert table.colnames[-5:] == INTERVAL_COLUMNS
            assert table["z_quantiles"].shape == (len(table), len(PZ_LEVELS))
            assert np.all(table["z_lo_95"] <= table["z_lo_68"]) and np.all(table["z_hi_68"] <= table["z_hi_95"])
            inside = (table["z_label"] >= table["z_lo_95"]) & (table["z_label"] <= table["z_hi_95"])
            assert np.mean(inside) == pytest.approx(record.uncertainty[kind]["mondrian"]["label"]["coverage_95"],
                                                    abs=1e-6)
        assert any(path.endswith("calibration.json") for path in record.outputs)


def test_the_export_carries_the_calibration(toy, tmp_path):
    from zpeft.run.export import export_run

    run_id = toy.run_id("lora-r2", seed=0)
    export_run(toy.results, run_id, tmp_path)
    shipped = json.loads((tmp_path / "calibration.json").read_text())
    assert set(shipped["variants"]) == {"marginal", "mondrian"}
    cal = Calibration.from_dict(shipped["variants"][shipped["preferred"]])
    table = read_catalogue(ResultsLayout(toy.results).catalogue(run_id, "spec"))
    lo, hi = cal.interval(read_predictions(toy.results, run_id)["spec"], 0.68,
                          np.asarray(table["mag_i"]) if cal.mondrian else None)
    np.testing.assert_allclose(lo, table["z_lo_68"], atol=1e-6)
    np.testing.assert_allclose(hi, table["z_hi_68"], atol=1e-6)
    assert "calibration.json" in (tmp_path / "README.txt").read_text()


def test_the_report_shows_coverage_per_strategy_and_magnitude_bin_and_pit_histograms(toy):
    from zpeft.report.calibration import calibration_frame

    text = (toy.report / "report.md").read_text()
    assert "## Calibration of error bars" in text and "### Coverage per i-magnitude bin" in text
    assert (toy.report / "calibration_coverage.png").is_file() and (toy.report / "calibration_pit.png").is_file()
    frame = calibration_frame(read_records(toy.results))
    assert set(frame["data_fraction"]) == {1.0} and set(frame["variant"]) == {"marginal", "mondrian"}
    whole = frame[(frame["bins"] == "all") & (frame["variant"] == "mondrian") & (frame["label"] == "full")]
    expected = np.mean([r.uncertainty["spec"]["mondrian"]["label"]["coverage_95"] for r in read_records(toy.results)
                        if r.label == "full" and r.data_fraction == 1.0])
    assert whole["coverage_95"].mean() == pytest.approx(expected)
    lines = [line for line in text.splitlines() if line.startswith("| full | mondrian |")]
    assert lines and lines[0].split(" | ")[4].startswith(f"{expected:.3f} ±"), lines  # the coverage_95 column


def test_a_test_set_without_magnitudes_gets_the_marginal_error_bars(prepared):
    from zpeft.uncertainty.runs import calibrate, catalogue_columns, preferred, score_tests

    rng = np.random.default_rng(2)
    validation = prepared.sets["spec", "val"]
    calibrations = calibrate(validation, validation.z + rng.normal(0, 0.05, len(validation)))
    bare = replace(prepared.sets["spec", "test"], mags={})
    z_pred = bare.z + rng.normal(0, 0.05, len(bare))
    assert calibrations["mondrian"].mondrian and preferred(calibrations, bare)[0] == "marginal"
    scores = score_tests(calibrations, {"spec": z_pred}, {"spec": bare})
    assert set(scores["spec"]) == {"marginal"} and "mag_bins" not in scores["spec"]["marginal"]["label"]
    lo, hi = calibrations["marginal"].interval(z_pred, 0.95)
    columns = catalogue_columns(preferred(calibrations, bare)[1], bare, z_pred)
    np.testing.assert_array_equal(columns["z_lo_95"], lo.astype(np.float32))
    np.testing.assert_array_equal(columns["z_hi_95"], hi.astype(np.float32))


def test_the_faint_verdict_pools_the_faintest_bin_over_seeds(toy):
    from zpeft.report.calibration import faint_verdict

    records = [r for r in read_records(toy.results) if r.label == "full" and r.data_fraction == 1.0]
    faint = [r.uncertainty["spec"]["mondrian"]["label"]["mag_bins"][-1] for r in records]
    n = sum(b["n"] for b in faint)
    covered = sum(b["coverage_95"] * b["n"] for b in faint) / n
    verdict = faint_verdict(read_records(toy.results), "full")
    assert verdict.startswith("full's mondrian error bars cover") and f"{covered:.0%} for the 95 % intervals" in verdict
    galaxies = n / len(records)  # seeds share the test galaxies: the standard error counts them once
    assert f"{galaxies:,.0f} galaxies x {len(records)} run(s)" in verdict
    calibrated = all(abs(sum(b[f"coverage_{t}"] * b["n"] for b in faint) / n - t / 100)
                     <= 2 * np.sqrt(t / 100 * (1 - t / 100) / galaxies) for t in (68, 95))
    assert (": calibrated on faint galaxies (two standard errors: ±" in verdict) == calibrated
    assert (": not calibrated on faint galaxies" in verdict) == (not calibrated)
    assert faint_verdict(read_records(toy.results), "no-such-strategy").endswith("no error bars per i-magnitude "
                                                                                 "bin recorded.")


def test_error_bars_are_added_to_old_records_exactly_as_a_run_computes_them(toy, tmp_path, capsys):
    import shutil

    from zpeft.cli import main
    from zpeft.run.records import write_record

    results = tmp_path / "results"
    shutil.copytree(toy.results, results)
    chosen = {toy.run_id("lora-r2", seed=0), toy.run_id("zero-shot", seed=1), toy.run_id("full", 0, 0.5)}
    before = {}
    for record in read_records(results):
        if record.run_id in chosen:  # as an older zpeft wrote it: no error bars, plain catalogues
            before[record.run_id] = record.uncertainty
            record.uncertainty = {}
            record.outputs = {k: v for k, v in record.outputs.items() if not k.endswith("calibration.json")}
            write_record(record, results)
    assert main(["error-bars", str(results), "--no-progress"]) == 0
    assert "error bars added to 3 run(s)" in capsys.readouterr().out
    after = {r.run_id: r for r in read_records(results)}
    for run_id, uncertainty in before.items():
        assert _max_difference(after[run_id].uncertainty, uncertainty) < 1e-6, run_id  # float32 inference
        assert any(k.endswith("calibration.json") for k in after[run_id].outputs)
    from zpeft.run.outputs import outputs_intact

    assert all(outputs_intact(results, r.outputs) for r in after.values() if r.status == "ok")
    assert main(["error-bars", str(results), "--no-progress"]) == 0  # nothing left to add
    assert "error bars added to 0 run(s)" in capsys.readouterr().out
    assert main(["error-bars", str(tmp_path / "nowhere")]) == 2


def _max_difference(a, b) -> float:
    """Largest absolute difference between two nested JSON values of the same shape (inf when shapes differ)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return max((_max_difference(a[k], b[k]) for k in a), default=0.0) if a.keys() == b.keys() else math.inf
    if isinstance(a, list) and isinstance(b, list):
        return max((_max_difference(x, y) for x, y in zip(a, b)), default=0.0) if len(a) == len(b) else math.inf
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(a - b)
    return 0.0 if a == b else math.inf


def test_the_answer_box_says_per_regime_whether_the_best_strategys_error_bars_hold_on_faint_galaxies(toy):
    from zpeft.report.calibration import faint_verdict

    answer = (toy.report / "report.md").read_text().split("## The answer")[1].split("\n## ")[0]
    regimes = answer.split("\n### ")[1:]
    assert len(regimes) == 2  # fractions 1 and 0.5
    for regime in regimes:
        lines = [line for line in regime.splitlines() if line.startswith("Error bars of the most accurate of these: ")]
        assert len(lines) == 1 and " error bars cover " in lines[0], regime
    records = read_records(toy.results)
    half = {r.run_id for r in records if r.data_fraction == 0.5}
    faint = [r.uncertainty["spec"]["mondrian"]["label"]["mag_bins"][-1] for r in records
             if r.run_id in half and r.label == "full"]
    covered = sum(b["coverage_68"] * b["n"] for b in faint) / sum(b["n"] for b in faint)
    verdict = faint_verdict(records, "full", half)  # a regime's verdict reads that regime's runs only
    assert f"{covered:.0%} for the 68 % intervals" in verdict and f"x {len(faint)} run(s)" in verdict
