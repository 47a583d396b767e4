"""Non-ML reference rows (template fits, BPZ, labels): the references file, their metrics and their place in the
report."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from zpeft.conventions import TEST_SETS
from zpeft.data.types import GalaxySet
from zpeft.metrics import paper_range_mask, point_metrics
from zpeft.report.build import build_report
from zpeft.report.references import FITS, ROW_NAMES, reference_table
from zpeft.run.execute import test_references as references_of
from zpeft.run.records import read_references, write_references


def test_a_references_file_without_template_fits_is_upgraded_not_refused(tmp_path):
    old = {"spec": np.array([0.1, 0.5], np.float32), "spec_true": np.array([0.11, 0.49], np.float32)}
    path = write_references(tmp_path, "sim", old)  # as older code wrote it
    new = {**old, "spec_template_grizy": np.array([0.13, 0.45], np.float32)}
    assert write_references(tmp_path, "sim", new) == path
    back = read_references(tmp_path, "sim")
    assert back.keys() == new.keys() and all(np.array_equal(back[k], new[k]) for k in new)
    write_references(tmp_path, "sim", old)  # older code again: agrees where both have arrays, keeps the upgrade
    assert read_references(tmp_path, "sim").keys() == new.keys()
    with pytest.raises(ValueError, match="different test-set references"):
        write_references(tmp_path, "sim", {**new, "spec_template_grizy": np.array([0.13, 0.46], np.float32)})
    with pytest.raises(ValueError, match="different test-set references"):  # upgrade only where the labels agree
        write_references(tmp_path, "sim", {**new, "spec": np.array([0.1, 0.6], np.float32)})
    with pytest.raises(ValueError, match="different test-set references"):  # a test set more is other data
        write_references(tmp_path, "sim", {**new, "photo": np.array([0.2], np.float32)})
    assert not list(tmp_path.glob("*.tmp*"))


def test_the_runner_stores_template_fits_where_the_test_set_has_them():
    def galaxies(template):
        z = np.array([0.2, 0.7], np.float32)
        return GalaxySet(np.zeros((2, 5, 4, 4), np.float32), z, np.arange(2), z_true=z + 0.01, z_template=template)

    refs = references_of({"spec": galaxies(np.array([0.3, 0.6], np.float32)), "photo": galaxies(None)})
    assert set(refs) == {"spec", "photo", "spec_true", "photo_true", "spec_template_grizy"}
    np.testing.assert_array_equal(refs["spec_template_grizy"], np.array([0.3, 0.6], np.float32))


@pytest.fixture(scope="module")
def with_templates(toy, tmp_path_factory):
    """The toy results with noisy fits (best case, on-stamp, BPZ) added to its references file (toy data have none)."""
    copy = tmp_path_factory.mktemp("reffit") / "results"
    shutil.copytree(toy.results, copy)
    refs = read_references(copy, "toy")
    rng = np.random.default_rng(3)
    templates = {f"{t}{suffix}": np.clip(refs[t] + scale * (1 + refs[t]) * rng.standard_normal(refs[t].size), 0, None)
                 .astype(np.float32) for t in TEST_SETS
                 for suffix, scale in zip(FITS.values(), (0.05, 0.07, 0.1, 0.12))}
    write_references(copy, "toy", {**refs, **templates})
    return copy


def test_reference_rows_are_point_metrics_of_the_template_fit_and_the_labels(with_templates):
    table, notes = reference_table(with_templates, ["toy"], n_boot=10)
    assert notes == []
    refs = read_references(with_templates, "toy")
    rows = table.set_index(["name", "test_set", "reference", "range"])
    cases = [(name, "label", f"{t}{suffix}", t) for t in TEST_SETS for name, suffix in FITS.items()] + \
        [(name, "true", f"{t}{suffix}", f"{t}_true") for t in TEST_SETS for name, suffix in FITS.items()] + \
        [("labels", "true", t, f"{t}_true") for t in TEST_SETS]
    for name, reference, pred_key, ref_key in cases:
        test_set = ref_key.removesuffix("_true")
        pred, ref = refs[pred_key], refs[ref_key]
        for range_, mask in (("all", np.ones(ref.size, bool)), ("paper_range", paper_range_mask(ref))):
            expected = point_metrics(pred[mask], ref[mask])
            row = rows.loc[(name, test_set, reference, range_)]
            assert row["n"] == expected["n"]
            for metric in ("bias", "sigma_nmad", "outlier_015", "rmse"):
                assert row[metric] == pytest.approx(expected[metric], rel=1e-6, abs=1e-9), (name, test_set, metric)
                assert np.isfinite(row[f"{metric}_lo"]) and row[f"{metric}_lo"] <= row[f"{metric}_hi"]
    assert ("labels", "spec", "label", "all") not in rows.index  # the labels against themselves say nothing


def test_report_puts_reference_rows_in_the_main_tables_and_compares_the_best_variant_with_the_template(
        with_templates, tmp_path):
    out = build_report(with_templates, tmp_path / "report", n_boot=20, progress=False).parent
    md = (out / "report.md").read_text()
    spec_table = md.split("### spec-z test set, against the label, whole test set")[1].split("###")[0]
    for row in ("template-fit (best case)", "template-fit (on-stamp)", "bpz (off-the-shelf)"):
        template_row = next(line for line in spec_table.splitlines() if line.startswith(f"| {row} |"))
        assert "[" in template_row and "| n/a |" not in template_row
    assert "| labels (reference) |" not in spec_table  # labels vs labels: not a row
    true_table = md.split("### photo-z test set, against the true redshift, whole test set")[1].split("###")[0]
    assert "| labels (reference) |" in true_table and "| template-fit (best case) |" in true_table
    assert "not available" not in md
    findings = md.split("## Appendix: exploratory comparisons")[1]  # best variant vs the fit: exploratory
    assert "template-fit (best case)" in findings
    results = pd.read_csv(out / "results.csv")
    assert not results["variant"].astype(str).str.contains("reference").any()  # zpeft compare never sees them
    references = pd.read_csv(out / "references.csv")
    assert set(references["name"]) == {"template-fit", "template-fit-onstamp", "bpz", "bpz-onstamp", "labels"}
    glossary = md.split("## Glossary")[1]
    assert all(f"| {row} |" in glossary for row in ROW_NAMES.values())


def test_without_template_fits_the_report_says_the_reference_is_not_available(toy):
    md = (toy.report / "report.md").read_text()
    assert "template-fit (best case) not available for the spec, photo, combined test set(s)" in md
    assert "bpz (off-the-shelf) not available for the spec, photo, combined test set(s)" in md
    tables = md.split("## Glossary")[0]
    assert "| template-fit (best case) |" not in tables
    assert "| labels (reference) |" in tables  # the toy data know their true z
    assert "no template-fit photo-z for the spec test set" in md.split("## Primary comparisons")[1]


def test_an_older_files_template_array_is_not_read_as_the_reference(tmp_path):
    """Before the grizy fit, `<set>_template` held the simulated survey's deep label fit: never a reference."""
    z = np.array([0.2, 0.5, 0.9], np.float32)
    write_references(tmp_path, "sim", {"spec": z, "spec_true": z, "spec_template": z + 0.01})
    table, notes = reference_table(tmp_path, ["sim"], n_boot=10)
    assert "template-fit" not in set(table["name"])
    assert any("template-fit" in note and "spec" in note for note in notes)
    write_references(tmp_path, "sim", {"spec": z, "spec_true": z, "spec_template_grizy": z + 0.02})  # upgrade
    assert {"spec_template", "spec_template_grizy"} <= set(read_references(tmp_path, "sim"))
    table, _ = reference_table(tmp_path, ["sim"], n_boot=10)
    fit = table[(table["name"] == "template-fit") & (table["reference"] == "label") & (table["range"] == "all")]
    assert fit["bias"].iloc[0] == pytest.approx(point_metrics(z + 0.02, z)["bias"], rel=1e-6)  # the new array


def test_gaps_to_the_reference_rows_are_paired_differences_of_the_variant_and_each_fit(with_templates):
    from zpeft.report.gaps import GAP_COLUMNS, reference_gaps
    from zpeft.run.records import read_predictions, read_records

    runs = {r.seed: r.run_id for r in read_records(with_templates) if r.label == "full" and r.data_fraction == 1.0}
    assert len(runs) == 2
    gaps = reference_gaps(with_templates, "toy", "full", runs, n_boot=50)
    assert list(gaps.columns) == GAP_COLUMNS
    assert set(gaps["b"]) == {ROW_NAMES[name] for name in FITS}
    assert set(zip(gaps["test_set"], gaps["reference"])) == {("spec", "label"), ("photo", "true")}
    assert set(gaps["range"]) == {"all", "paper_range"}
    refs = read_references(with_templates, "toy")
    preds = [read_predictions(with_templates, run_id)["spec"] for run_id in runs.values()]
    row = gaps[(gaps["b"] == ROW_NAMES["bpz"]) & (gaps["test_set"] == "spec") & (gaps["range"] == "all")
               & (gaps["metric"] == "sigma_nmad")].iloc[0]
    ours = np.mean([point_metrics(p, refs["spec"])["sigma_nmad"] for p in preds])
    theirs = point_metrics(refs["spec_bpz"], refs["spec"])["sigma_nmad"]
    assert row["value_a"] == pytest.approx(ours, rel=1e-6) and row["value_b"] == pytest.approx(theirs, rel=1e-6)
    assert row["diff"] == pytest.approx(ours - theirs, rel=1e-6) and row["lo"] <= row["diff"] <= row["hi"]
