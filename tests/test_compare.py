"""`zpeft compare`: direction-aware, per-metric regression check of results.csv tables from the toy pipeline."""

from __future__ import annotations

import pandas as pd
import pytest

from zpeft.cli import main
from zpeft.report.compare import compare_tables, parse_tolerances, read_table

KEY = {"variant": "lora-r4", "seed": 0, "data_fraction": 1.0, "test_set": "spec", "reference": "label",
       "range": "all"}


@pytest.fixture(scope="module")
def baseline_csv(toy):
    return toy.report / "results.csv"


@pytest.fixture
def table(baseline_csv):
    return pd.read_csv(baseline_csv)


def _row(table: pd.DataFrame, **key) -> pd.Series:
    mask = pd.Series(True, index=table.index)
    for column, value in {**KEY, **key}.items():
        mask &= table[column] == value
    assert mask.sum() == 1
    return mask


def _compare(capsys, baseline_csv, new: pd.DataFrame, tmp_path, *extra: str) -> tuple[int, str]:
    path = tmp_path / "new.csv"
    new.to_csv(path, index=False)
    code = main(["compare", str(baseline_csv), str(path), *extra])
    return code, capsys.readouterr().out


def test_identical_tables_pass(capsys, baseline_csv):
    assert main(["compare", str(baseline_csv), str(baseline_csv)]) == 0
    out = capsys.readouterr().out
    assert "result: no regression" in out and "sigma_nmad" in out


def test_sigma_nmad_worse_beyond_tolerance_fails(capsys, baseline_csv, table, tmp_path):
    table.loc[_row(table), "sigma_nmad"] += 0.006
    code, out = _compare(capsys, baseline_csv, table, tmp_path)
    assert code == 1
    failing = [line for line in out.splitlines() if "REGRESSION" in line and "lora-r4" in line]
    assert len(failing) == 1 and "sigma_nmad" in failing[0]


def test_sigma_nmad_worse_within_tolerance_or_better_passes(capsys, baseline_csv, table, tmp_path):
    table.loc[_row(table), "sigma_nmad"] += 0.004
    table.loc[_row(table, seed=1), "sigma_nmad"] -= 0.02
    code, out = _compare(capsys, baseline_csv, table, tmp_path)
    assert code == 0
    result = compare_tables(read_table(baseline_csv), read_table(tmp_path / "new.csv"))
    checked = result.checked.set_index(["variant", "seed", "data_fraction", "test_set", "reference", "range",
                                        "metric"])
    assert checked.at[("lora-r4", 1, 1.0, "spec", "label", "all", "sigma_nmad"), "status"] == "improved"
    assert checked.at[("lora-r4", 0, 1.0, "spec", "label", "all", "sigma_nmad"), "status"] == "ok"


def test_bias_is_judged_by_its_distance_from_zero(baseline_csv, table):
    base = table.copy()
    base.loc[_row(base), "bias"] = 0.010
    flipped, worse = base.copy(), base.copy()
    flipped.loc[_row(flipped), "bias"] = -0.012  # |bias| +0.002: within tolerance although the value fell 0.022
    worse.loc[_row(worse), "bias"] = -0.020  # |bias| +0.010: a regression although the value fell
    keep = lambda t: t[t["status"] == "ok"]  # noqa: E731  (read_table's filter, for in-memory tables)
    assert not compare_tables(keep(base), keep(flipped)).regressed
    assert compare_tables(keep(base), keep(worse)).regressed


def test_missing_run_fails_and_new_run_is_only_reported(capsys, toy, baseline_csv, table, tmp_path):
    without = table[table["run_id"] != toy.run_id("full", seed=1)]
    code, out = _compare(capsys, baseline_csv, without, tmp_path)
    assert code == 1 and "missing from the new table (12 rows" in out

    extra = table[table["run_id"] == toy.run_id("full", seed=1)].assign(run_id="full-s7", seed=7)
    code, out = _compare(capsys, baseline_csv, pd.concat([table, extra]), tmp_path)
    assert code == 0 and "new in the new table (12 rows, not checked)" in out


def test_trainable_params_must_match_exactly(capsys, toy, baseline_csv, table, tmp_path):
    table.loc[table["run_id"] == toy.run_id("lora-r2", seed=0), "trainable_params"] += 1
    code, out = _compare(capsys, baseline_csv, table, tmp_path)
    assert code == 1 and "trainable_params" in out.split("regressions:")[1]


def test_timings_are_never_a_regression(capsys, baseline_csv, table, tmp_path):
    for column in ("train_seconds", "base_train_seconds", "images_per_second", "peak_memory_mb"):
        table[column] = table[column] * 100 + 1000
    assert _compare(capsys, baseline_csv, table, tmp_path)[0] == 0


def test_tolerance_and_test_set_options(capsys, baseline_csv, table, tmp_path):
    table.loc[_row(table), "sigma_nmad"] += 0.05
    assert _compare(capsys, baseline_csv, table, tmp_path, "--tolerance", "sigma_nmad=0.1")[0] == 0
    assert _compare(capsys, baseline_csv, table, tmp_path, "--test-set", "photo", "--test-set", "combined")[0] == 0
    assert _compare(capsys, baseline_csv, table, tmp_path, "--test-set", "spec")[0] == 1
    assert main(["compare", str(baseline_csv), str(tmp_path / "new.csv"), "--tolerance", "sigma=0.1"]) == 2
    assert "metric=value with metric one of" in capsys.readouterr().err


def test_parse_tolerances_rejects_bad_values():
    assert parse_tolerances(["outlier_015=0.02"])["outlier_015"] == 0.02
    with pytest.raises(ValueError, match="not a number"):
        parse_tolerances(["sigma_nmad=small"])
    with pytest.raises(ValueError, match=">= 0"):
        parse_tolerances(["sigma_nmad=-1"])


def test_duplicate_keys_are_an_error(tmp_path, table):
    path = tmp_path / "dup.csv"
    pd.concat([table, table.head(1)]).to_csv(path, index=False)
    with pytest.raises(ValueError, match="share their key"):
        read_table(path)


def test_a_metric_missing_from_the_new_table_is_a_regression(capsys, baseline_csv, table, tmp_path):
    code, out = _compare(capsys, baseline_csv, table.drop(columns=["sigma_nmad"]), tmp_path)
    assert code == 1 and "sigma_nmad" in out.split("regressions:")[1]


def test_a_changed_test_set_size_is_a_regression(capsys, baseline_csv, table, tmp_path):
    table.loc[_row(table), "n"] = table.loc[_row(table), "n"] // 2
    assert _compare(capsys, baseline_csv, table, tmp_path)[0] == 1


def test_a_test_set_filter_that_selects_nothing_is_an_error(baseline_csv, table):
    base = read_table(baseline_csv)
    with pytest.raises(ValueError, match="select no baseline rows"):
        compare_tables(base, base, test_sets=["specz"])


def test_findings_compare_counts_significant_differences_that_change_sign(tmp_path, capsys):
    keys = dict(dataset="d", backbone="b", data_fraction=1.0, test_set="spec", reference="label", range="all",
                metric="sigma_nmad", b="head-only")
    before = pd.DataFrame([{**keys, "a": "full", "diff": -0.01, "significant": True},
                           {**keys, "a": "lora-r4", "diff": -0.002, "significant": True},
                           {**keys, "a": "paper-tl", "diff": 0.001, "significant": False}])
    after = before.assign(diff=[-0.012, 0.001, -0.003], significant=[True, False, False])
    before.to_csv(tmp_path / "a.csv", index=False)
    after.to_csv(tmp_path / "b.csv", index=False)
    assert main(["compare", "--findings", str(tmp_path / "a.csv"), str(tmp_path / "b.csv")]) == 1
    out = capsys.readouterr().out
    assert out.startswith("2 significant differences before; 1 changed sign") and "lora-r4 vs head-only" in out
    assert "paper-tl" not in out  # not significant before: not checked
    after.loc[1, "diff"] = -0.001
    after.to_csv(tmp_path / "b.csv", index=False)
    assert main(["compare", "--findings", str(tmp_path / "a.csv"), str(tmp_path / "b.csv")]) == 0
