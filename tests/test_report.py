"""Reports from a results directory made by the real runner on toy data (the `toy` fixture in conftest.py)."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from zpeft import strategies
from zpeft.metrics import METRICS
from zpeft.report.build import build_report
from zpeft.report.findings import Comparison, compare_block, with_verdicts
from zpeft.report.tables import main_fraction, results_table, variant_names
from zpeft.run.records import RunRecord, read_records, read_references, write_references

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EXPECTED_PLOTS = ("metrics_by_strategy_label", "metrics_by_strategy_true", "pareto", "rank_curves",
                  "fraction_curves", "density_spec", "density_photo", "density_combined", "per_bin_label",
                  "per_bin_true", "nz", "running_dz", "per_magnitude_i", "calibration_coverage", "calibration_pit")
VARIANTS = ("zero-shot", "head-only", "lora-r2", "lora-r4", "full", "combined")


@pytest.fixture(scope="module")
def results(toy):
    return toy.results


@pytest.fixture(scope="module")
def report(toy):
    return toy.report


def test_results_csv_has_one_row_per_run_test_set_reference_and_range(toy, results, report):
    table = pd.read_csv(report / "results.csv")
    records = read_records(results)
    ok = [r for r in records if r.status == "ok"]
    ok_rows = table[table["status"] == "ok"]
    assert len(ok_rows) == len(ok) * 3 * 2 * 2  # test sets x (label, true) x (all, paper_range)
    assert not ok_rows.duplicated(["run_id", "test_set", "reference", "range"]).any()
    for metric in METRICS:
        assert {metric, f"{metric}_lo", f"{metric}_hi"} <= set(table.columns)
    assert {"rank", "bn", "seed", "data_fraction", "trainable_params", "train_seconds", "base_train_seconds",
            "images_per_second", "peak_memory_mb", "device"} <= set(table.columns)
    lora = ok_rows[ok_rows["label"] == "lora-r4"]
    assert set(lora["rank"]) == {4}
    record = next(r for r in ok if r.run_id == toy.run_id("lora-r2", seed=1))
    row = ok_rows[(ok_rows["run_id"] == record.run_id) & (ok_rows["test_set"] == "photo")
                  & (ok_rows["reference"] == "true") & (ok_rows["range"] == "paper_range")].iloc[0]
    assert row["sigma_nmad"] == pytest.approx(record.metrics["photo"]["true"]["paper_range"]["sigma_nmad"])
    assert row["trainable_params"] == record.trainable_params


def test_records_and_report_carry_each_runs_rate_and_its_source(toy, results, report):
    ok = [r for r in read_records(results) if r.status == "ok"]
    trained = [r for r in ok if r.label != "zero-shot"]
    # The toy suite sets no rate: every trained run used its strategy's class default, and says so.
    assert trained and all(r.lr_source == "default" and r.lr_grid == [] for r in trained)
    assert all(r.lr_source == "" for r in ok if r.label == "zero-shot")
    assert all(r.ended_by == ("epoch cap" if r.epochs == r.train_settings["epochs"] else "stopping rule")
               for r in trained)
    # Fine-tunes validate their start: epoch 0 is in the history and the best is never worse than it.
    tuned = [r for r in trained if r.strategy != "combined"]
    assert all(r.history[0]["epoch"] == 0 and min(h["val_loss"] for h in r.history) <= r.history[0]["val_loss"]
               for r in tuned)
    table = pd.read_csv(report / "results.csv")
    head = table[(table["label"] == "head-only") & (table["status"] == "ok")]
    assert set(head["lr_source"]) == {"default"} and set(head["lr"]) == {strategies.create("head-only").default_lr}
    text = (report / "report.md").read_text()
    section = text.split("## Training: learning rates and convergence")[1].split("\n## ")[0]
    assert "head-only" in section and "default" in section and "zero-shot" not in section


def test_failed_runs_are_listed_with_their_error(toy, report):
    table = pd.read_csv(report / "results.csv")
    failed = table[table["status"] == "failed"]
    assert set(failed["label"]) == {"toy-failure"} and len(failed) == 4  # 2 seeds x 2 fractions
    assert all(toy.failure in error for error in failed["error"])
    md = (report / "report.md").read_text()
    assert "## Failed runs" in md and toy.failure in md.split("## Failed runs")[1]


def test_report_md_leads_with_the_answer_then_the_paper_table_then_the_pareto_plot(report):
    md = (report / "report.md").read_text()
    h2 = [line for line in md.splitlines() if line.startswith("## ")]
    assert h2[:3] == ["## The answer", "## Results on the spec-z test set", "## Accuracy against cost"]
    assert md.index("](pareto.png)") < md.index("## Against the reference paper") < md.index("## Primary comparisons")
    answer = md.split("## The answer")[1].split("\n## ")[0]
    assert "spec-z training galaxies" in answer and "How sure: 2 seed(s)" in answer
    assert "sigma_nmad Δ head-only" in answer and "sigma_nmad Δ zero-shot" in answer
    paper = md.split("## Results on the spec-z test set")[1].split("\n## ")[0]
    for variant in VARIANTS:
        assert f"| {variant} |" in paper
    main = md.split("## Results by strategy")[1].split("\n## ")[0]
    header = next(line for line in main.splitlines() if line.startswith("| strategy"))
    assert [c.strip() for c in header.strip("|").split("|")][-3:] == ["bias", "sigma_nmad", "outlier_015"]
    assert "±" in main  # two seeds: mean ± std


def test_findings_csv_marks_a_small_primary_family_whose_intervals_match_its_verdicts(report):
    findings = pd.read_csv(report / "findings.csv")
    assert set(findings["family"]) == {"primary", "exploratory"}
    primary = findings[findings["family"] == "primary"]
    assert 0 < len(primary) <= 48
    assert set(zip(primary["test_set"], primary["reference"], primary["range"])) == {("spec", "label", "all")}
    assert not (primary["a"] == primary["b"]).any()
    pairs = set(zip(primary["data_fraction"], primary["a"], primary["b"], primary["metric"]))
    assert not any((f, b, a, m) in pairs for f, a, b, m in pairs), "a mirrored pair"
    assert (findings["p"] >= 1 / (findings["n_boot"] + 1)).all()
    excludes = (primary["lo"] > 0) | (primary["hi"] < 0)
    assert (excludes == primary["significant"].astype(bool)).all()
    assert primary.loc[~primary["significant"].astype(bool), "detectable"].gt(0).all()
    exploratory = findings[findings["family"] == "exploratory"]
    assert exploratory["significant"].isna().all() and (exploratory["interval_level"] == 0.95).all()
    assert {"photo", "spec"} <= set(exploratory["test_set"]) and "paper_range" in set(exploratory["range"])
    assert {("lora-r4", "full")} <= set(zip(exploratory["a"], exploratory["b"]))


def test_exploratory_comparisons_sit_in_a_collapsed_appendix(report):
    page = (report / "report.html").read_text()
    appendix = page.split('id="appendix-exploratory-comparisons"')[1]
    assert appendix.lstrip(">").split("</h2>", 1)[1].lstrip().startswith("<details>")
    assert "not tests" in appendix and "Holm p" not in appendix


def test_every_plot_is_a_valid_png(report):
    for name in EXPECTED_PLOTS:
        path = report / f"{name}.png"
        assert path.read_bytes()[:8] == PNG_SIGNATURE, name
        image = imread(path)
        assert image.shape[0] > 300 and image.shape[1] > 600, name
        assert image[..., :3].std() > 0.01, f"{name} is blank"
        assert f"]({name}.png)" in (report / "report.md").read_text()


def test_html_is_self_contained(report):
    page = (report / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.IGNORECASE)
    sources = re.findall(r"""<img[^>]*\ssrc="([^"]+)\"""", page)
    assert len(sources) == len(EXPECTED_PLOTS)
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<table" in page and "<link" not in page and "<script" not in page


def _spec_rows(results) -> pd.DataFrame:
    table = main_fraction(results_table(read_records(results)))
    return table[(table["status"] == "ok") & (table["test_set"] == "spec") & (table["reference"] == "label")
                 & (table["range"] == "all")]


def test_findings_mark_identical_predictions_as_no_difference_and_a_shift_as_one(results):
    rows = _spec_rows(results)
    z_ref = read_references(results, "toy")["spec"]
    head = rows[rows["variant"] == "head-only"]
    runs = {"head-only": {int(r["seed"]): _preds(results, r["run_id"]) for _, r in head.iterrows()}}
    runs["copy"] = {s: p.copy() for s, p in runs["head-only"].items()}
    runs["shifted"] = {s: p + 0.3 * (1 + z_ref) for s, p in runs["head-only"].items()}
    out = compare_block(runs, z_ref, [Comparison("copy", "head-only", "t"), Comparison("shifted", "head-only", "t")],
                        ("bias", "sigma_nmad", "outlier_015"), n_boot=999)
    out = with_verdicts(out.assign(family="exploratory"), 0.95).set_index(["a", "metric"])
    for metric in ("bias", "sigma_nmad", "outlier_015"):
        assert out.loc[("copy", metric), ["diff", "lo", "hi"]].tolist() == [0.0, 0.0, 0.0]
        assert out.loc[("copy", metric), "p"] == 1.0
    shifted = out.loc[("shifted", "bias")]
    assert shifted["diff"] > 0 and shifted["lo"] > 0 and shifted["p"] == pytest.approx(2 / 1000)  # |bias| grew


def _preds(results, run_id):
    with np.load(results / f"{run_id}.preds.npz") as f:
        return f["spec"]


def test_report_without_references_or_second_fraction_says_what_it_skipped(results, tmp_path):
    partial = tmp_path / "partial"
    partial.mkdir()
    for path in results.glob("*__f1__s0__*"):  # run ids: dataset__backbone__label__f<fraction>__s<seed>__hash
        shutil.copy(path, partial)
    html = build_report(partial, tmp_path / "out", n_boot=20, progress=False)
    md = (html.parent / "report.md").read_text()
    assert "Metrics against the spec-z training set size (every run used the same data fraction)" in md
    assert "no test-set references" in md
    assert not (html.parent / "fraction_curves.png").exists()
    assert (html.parent / "pareto.png").exists()
    assert "[" in md.split("## Results by strategy")[1].split("##")[1]  # one seed: [lo, hi] intervals


def test_build_report_needs_records(tmp_path):
    with pytest.raises(FileNotFoundError, match="no run records"):
        build_report(tmp_path, tmp_path / "out")


def test_variant_names_tell_apart_runs_that_share_a_label():
    def record(run_id, bn):
        return RunRecord(run_id=run_id, config_hash=run_id, suite="s", dataset="d", backbone="b", strategy="lora",
                         label="lora-r4", params={"rank": 4, "bn": bn}, seed=0, data_fraction=1.0,
                         train_settings={}, status="ok")

    names = variant_names([record("a", "frozen"), record("b", "train"), record("c", "frozen")])
    assert names == {"a": "lora-r4 (bn=frozen)", "b": "lora-r4 (bn=train)", "c": "lora-r4 (bn=frozen)"}


def test_references_are_written_once_and_guard_against_changed_data(tmp_path):
    refs = {"spec": np.array([0.1, 0.5], dtype=np.float32), "spec_true": np.array([0.11, 0.49], dtype=np.float32)}
    path = write_references(tmp_path, "data/sim paper", refs)
    assert write_references(tmp_path, "data/sim paper", refs) == path
    back = read_references(tmp_path, "data/sim paper")
    assert back.keys() == refs.keys() and all(np.array_equal(back[k], refs[k]) for k in refs)
    with pytest.raises(ValueError, match="different test-set references"):
        write_references(tmp_path, "data/sim paper", {**refs, "spec": np.array([0.1, 0.6])})
    with pytest.raises(FileNotFoundError, match="other"):
        read_references(tmp_path, "other")
    assert not list(tmp_path.glob("*.tmp*"))


def test_records_outside_the_current_plan_are_left_out(results, tmp_path):
    import json

    from zpeft.report.build import current_records

    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    records = read_records(copy)
    assert current_records(copy) == (records, 0)  # no plan: every record counts
    keep = [r.run_id for r in records[:2]]
    (copy / "suite").mkdir(exist_ok=True)
    (copy / "suite" / "plan.json").write_text(json.dumps({"runs": [{"run_id": i} for i in keep]}))
    kept, stale = current_records(copy)
    assert [r.run_id for r in kept] == keep and stale == len(records) - 2


def test_report_ends_with_a_glossary_that_names_rails_outlier_rate(report):
    glossary = (report / "report.md").read_text().split("## Glossary of metrics")[1]
    from zpeft.metrics import METRICS

    for name in METRICS.names():
        assert f"| {name} |" in glossary
    rail = next(line for line in glossary.splitlines() if line.startswith("| outlier_rail |"))
    assert 'RAIL calls this rate the "catastrophic outlier rate"' in rail
    assert "Not RAIL's" in next(line for line in glossary.splitlines() if line.startswith("| catastrophic |"))


def test_glossary_says_what_the_template_fit_row_is(report):
    from zpeft.report.references import ROW_NAMES, TEMPLATE_FIT

    glossary = (report / "report.md").read_text().split("## Glossary of metrics")[1]
    row = next(line for line in glossary.splitlines() if line.startswith(f"| {ROW_NAMES[TEMPLATE_FIT]} |"))
    assert "grizy" in row and "best case" in row and "no images" in row
    assert "scores zero" not in glossary and "photo-z labels;" not in row


def test_plots_show_sizes_signed_bias_and_the_numbers_of_each_density_panel(report):
    md = (report / "report.md").read_text()
    assert "the number of spec-z training galaxies the run used" in md
    assert "bias is signed" in md and "linear axis" in md
    assert "Each panel states its N galaxies, bias, sigma_nmad and outlier_015" in md and "clipped." in md
    table = pd.read_csv(report / "results.csv")
    sizes = table[table["status"] == "ok"].groupby("data_fraction")["n_spec_train"].max()
    assert sizes[0.5] < sizes[1.0]


def test_what_ended_training_is_read_from_ended_by_or_from_older_records_stopped_early():
    from zpeft.report.tables import ended_by

    def record(**fields):
        return RunRecord.from_dict(dict(run_id="r", config_hash="h", suite="s", dataset="d", backbone="b",
                                        strategy="lora", label="lora-r4", params={}, seed=0, data_fraction=1.0,
                                        train_settings={}, status="ok", **fields))

    assert ended_by(record(epochs=5, stopped_early=True)) == "stopping rule"
    assert ended_by(record(epochs=15, stopped_early=False)) == "epoch cap"
    assert ended_by(record(epochs=0)) == ""
    newer = record(epochs=15, stopped_early=True, ended_by="epoch cap")  # a newer record says it itself
    assert ended_by(newer) == "epoch cap"
