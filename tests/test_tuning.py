"""`zpeft tune`: one grid for every trained variant, the rate chosen by validation loss, rates written back."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from zpeft.cli import main
from zpeft.run.plan import expand
from zpeft.run.records import read_records
from zpeft.run.suite import SUITES_DIR, SuiteError, load_suite
from zpeft.run.tuning import choose_rates, tuning_suite


def _table(rows):
    return pd.DataFrame([{"dataset": "d", "backbone": "b", "variant": v, "lr": lr, "val_loss": loss,
                          "epochs": 2, "best_epoch": 2, "max_epochs": 2, "stopped_early": False, "status": "ok",
                          "error": ""} for v, lr, loss in rows])


def test_choose_rates_picks_the_lowest_validation_loss_and_reports_flatness():
    table = _table([("a", 1e-3, 0.50), ("a", 3e-3, 0.40), ("a", 1e-2, 0.401),
                    ("b", 1e-3, 0.20), ("b", 3e-3, 0.30), ("b", 1e-2, math.inf)])
    chosen = choose_rates(table).set_index("variant")
    assert chosen.at["a", "lr"] == 3e-3 and chosen.at["a", "flat"] == 2 and not chosen.at["a", "at_edge"]
    assert chosen.at["b", "lr"] == 1e-3 and chosen.at["b", "flat"] == 1 and chosen.at["b", "at_edge"]


def test_a_variant_that_failed_at_every_rate_gets_no_rate():
    chosen = choose_rates(_table([("a", 1e-3, math.inf), ("a", 1e-2, math.inf)]))
    assert math.isnan(chosen["lr"].iloc[0])


def test_tuning_suite_splits_grids_skips_untrained_and_uses_one_seed():
    suite = load_suite("quick")
    tuned, runs = tuning_suite(suite, (1e-3, 1e-2))
    variants = {r.variant for r in runs.values()}
    assert variants == {"head-only", "last-k1", "lora-r2", "lora-r4", "lora-r8", "full", "combined"}
    assert len(runs) == 2 * len(variants) and tuned.seeds == (suite.seeds[0],)
    assert {r.lr for r in runs.values()} == {1e-3, 1e-2}
    with pytest.raises(ValueError, match="positive"):
        tuning_suite(suite, (0.0,))


def test_tune_command_chooses_by_validation_and_writes_a_valid_suite(tmp_path: Path, monkeypatch):
    text = (SUITES_DIR / "tiny.toml").read_text().replace('name = "tiny"', 'name = "t"')
    suite_path = tmp_path / "t.toml"
    suite_path.write_text(text.replace("n_boot = 20", "n_boot = 5"))
    out, report = tmp_path / "res", tmp_path / "rep"
    assert main(["tune", str(suite_path), "--grid", "1e-4,1e-2", "--out", str(out), "--report", str(report),
                 "--no-progress"]) == 0
    table = pd.read_csv(report / "tuning.csv")
    records = {(r.label, r.train_settings["lr"]): r for r in read_records(out)}
    for variant, part in table.groupby("variant"):
        best = part.loc[part["val_loss"].idxmin(), "lr"]
        losses = {lr: min(h["val_loss"] for h in r.history) for (label, lr), r in records.items()
                  if label.startswith(variant + "-lr")}
        assert min(losses, key=losses.get) == pytest.approx(best)
    rewritten = load_suite(suite_path)
    chosen = {label: spec.lr for spec in rewritten.strategies for _, label in spec.expand()}
    assert chosen["zero-shot"] is None
    assert chosen["lora-r2"] in (1e-4, 1e-2) and chosen["lora-r4"] in (1e-4, 1e-2)
    assert "zpeft tune t" in suite_path.read_text() and (report / "tuning.md").is_file()
    # The rewritten suite says the rates were tuned, and so does every record run from it.
    planned = {run.label: run for run in expand(rewritten)}
    assert planned["lora-r2"].lr_source == "tuned" and planned["lora-r2"].lr_grid == (1e-4, 1e-2)
    assert planned["zero-shot"].lr_source == "" and planned["zero-shot"].lr_grid == ()


def test_rate_sources_tuned_suite_protocol_default(tmp_path: Path):
    path = tmp_path / "s.toml"
    path.write_text('name = "s"\ndatasets = ["toy"]\nbackbones = ["cnn-small"]\n'
                    '[[strategies]]\nname = "head-only"\nlr = 0.001\nlr_grid = [0.0001, 0.001]\n'
                    '[[strategies]]\nname = "full"\nlr = 0.001\n'
                    '[[strategies]]\nname = "paper-tl"\n'
                    '[[strategies]]\nname = "lora"\n')
    sources = {run.label: (run.lr_source, run.train.lr) for run in expand(load_suite(path))}
    assert sources["head-only"] == ("tuned", 1e-3) and sources["full"] == ("suite", 1e-3)
    assert sources["paper-tl"] == ("protocol", 1e-8)
    assert sources["lora-r4"][0] == "default"


def test_an_lr_grid_must_hold_the_rate(tmp_path: Path):
    path = tmp_path / "s.toml"
    path.write_text('name = "s"\ndatasets = ["toy"]\nbackbones = ["cnn-small"]\n'
                    '[[strategies]]\nname = "head-only"\nlr = 0.002\nlr_grid = [0.0001, 0.001]\n')
    with pytest.raises(SuiteError, match="not one of its values"):
        load_suite(path)


def test_tune_rejects_a_bad_grid(capsys):
    assert main(["tune", "tiny", "--grid", "1e-3,fast"]) == 2
    assert "'fast' is not a number" in capsys.readouterr().err
