"""`zpeft tune`: one grid for the base and every trained variant, chosen per regime by validation loss, written back."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from zpeft.cli import main
from zpeft.run.plan import expand
from zpeft.run.records import read_records
from zpeft.run.suite import SUITES_DIR, SuiteError, load_suite
from zpeft.run.tuning import base_tuning_suites, choose_rates, tuning_suite


def _table(rows, fraction=1.0):
    return pd.DataFrame([{"dataset": "d", "backbone": "b", "variant": v, "lr": lr, "data_fraction": fraction,
                          "val_loss": loss, "epochs": 2, "best_epoch": 2, "ended_by": "stopping rule", "status": "ok",
                          "error": ""} for v, lr, loss in rows])


def test_choose_rates_picks_the_lowest_validation_loss_and_reports_flatness():
    table = _table([("a", 1e-3, 0.50), ("a", 3e-3, 0.40), ("a", 1e-2, 0.401),
                    ("b", 1e-3, 0.20), ("b", 3e-3, 0.30), ("b", 1e-2, math.inf)])
    chosen = choose_rates(table).set_index("variant")
    assert chosen.at["a", "lr"] == 3e-3 and chosen.at["a", "flat"] == 2 and not chosen.at["a", "at_edge"]
    assert chosen.at["b", "lr"] == 1e-3 and chosen.at["b", "flat"] == 1 and chosen.at["b", "at_edge"]


def test_rates_are_chosen_per_data_fraction():
    table = pd.concat([_table([("a", 1e-3, 0.50), ("a", 3e-3, 0.40), ("a", 1e-2, 0.45)], 1.0),
                       _table([("a", 1e-3, 0.30), ("a", 3e-3, 0.35), ("a", 1e-2, 0.45)], 0.1)])
    chosen = choose_rates(table).set_index("data_fraction")
    assert chosen.at[1.0, "lr"] == 3e-3 and chosen.at[0.1, "lr"] == 1e-3 and chosen.at[0.1, "at_edge"]


def test_a_variant_no_rate_could_improve_is_not_called_an_edge_optimum():
    table = _table([("a", 1e-3, 0.5), ("a", 1e-2, 0.5)]).assign(best_epoch=0)
    chosen = choose_rates(table).iloc[0]
    assert chosen["lr"] == 1e-3 and not chosen["at_edge"] and "no rate beat the starting weights" in chosen["note"]


def test_a_variant_that_failed_at_every_rate_gets_no_rate():
    chosen = choose_rates(_table([("a", 1e-3, math.inf), ("a", 1e-2, math.inf)]))
    assert math.isnan(chosen["lr"].iloc[0])


def test_tuning_suite_splits_grids_skips_untrained_keeps_every_fraction_and_uses_one_seed():
    suite = load_suite("quick")
    tuned, runs = tuning_suite(suite, (1e-3, 1e-2), base_lr=3e-3)
    variants = {r.variant for r in runs.values()}
    trained = {label for spec in suite.strategies for strategy, label in spec.expand()
               if strategy.trains_on != "none" and not strategy.rate_is_protocol}
    assert variants == trained and "paper-tl" not in variants and "zero-shot" not in variants
    assert len(runs) == 2 * len(variants) and tuned.seeds == (suite.seeds[0],)
    assert tuned.data_fractions == suite.data_fractions and tuned.base.lr == 3e-3
    assert {r.lr for r in runs.values()} == {1e-3, 1e-2}
    with pytest.raises(ValueError, match="positive"):
        tuning_suite(suite, (0.0,))


def test_base_tuning_trains_one_base_per_rate():
    suites, runs = base_tuning_suites(load_suite("quick"), (1e-3, 1e-2))
    assert [s.base.lr for s in suites] == [1e-3, 1e-2]
    assert {r.variant for r in runs.values()} == {"base"} and len(runs) == 2
    assert all(len(s.strategies) == 1 and s.strategies[0].name == "zero-shot" for s in suites)


def test_tune_command_chooses_by_validation_per_regime_and_writes_a_valid_suite(tmp_path: Path):
    text = (SUITES_DIR / "tiny.toml").read_text().replace('name = "tiny"', 'name = "t"')
    text = text.replace("data_fractions = [1.0]", "data_fractions = [0.5, 1.0]")
    suite_path = tmp_path / "t.toml"
    suite_path.write_text(text.replace("n_boot = 20", "n_boot = 5"))
    out, report = tmp_path / "res", tmp_path / "rep"
    assert main(["tune", str(suite_path), "--grid", "1e-4,1e-2", "--out", str(out), "--report", str(report),
                 "--no-progress"]) == 0
    table = pd.read_csv(report / "tuning.csv")
    assert set(table["variant"]) >= {"base", "head-only", "lora-r2"} and set(table["data_fraction"]) == {0.5, 1.0}
    records = {(r.label, r.data_fraction, r.train_settings.get("lr")): r for r in read_records(out)}
    for (variant, fraction), part in table[table["variant"] != "base"].groupby(["variant", "data_fraction"]):
        best = part.loc[part["val_loss"].idxmin(), "lr"]
        losses = {lr: min(h["val_loss"] for h in r.history) for (label, f, lr), r in records.items()
                  if label.startswith(variant + "-lr") and f == fraction}
        assert min(losses, key=losses.get) == pytest.approx(best)
    rewritten = load_suite(suite_path)
    chosen = {label: spec.lr for spec in rewritten.strategies for _, label in spec.expand()}
    assert chosen["zero-shot"] is None
    assert set(chosen["lora-r2"]) == {0.5, 1.0} and set(chosen["lora-r2"].values()) <= {1e-4, 1e-2}
    base_rows = table[table["variant"] == "base"]
    assert rewritten.base.lr == base_rows.loc[base_rows["val_loss"].idxmin(), "lr"]
    assert rewritten.base_lr_grid == (1e-4, 1e-2)
    assert "zpeft tune t" in suite_path.read_text() and (report / "tuning.md").is_file()
    # The rewritten suite says the rates were tuned, per regime, and so does every record run from it.
    planned = {(run.label, run.data_fraction): run for run in expand(rewritten)}
    assert planned["lora-r2", 0.5].lr_source == "tuned" and planned["lora-r2", 0.5].lr_grid == (1e-4, 1e-2)
    assert planned["lora-r2", 0.5].train.lr == chosen["lora-r2"][0.5]
    assert planned["zero-shot", 1.0].lr_source == "" and planned["zero-shot", 1.0].base_lr_source == "tuned"


def test_rate_sources_tuned_suite_protocol_default(tmp_path: Path):
    path = tmp_path / "s.toml"
    path.write_text('name = "s"\ndatasets = ["toy"]\nbackbones = ["cnn-small"]\n'
                    '[[strategies]]\nname = "head-only"\nlr = {"1" = 0.001}\nlr_grid = [0.0001, 0.001]\n'
                    '[[strategies]]\nname = "full"\nlr = 0.001\n'
                    '[[strategies]]\nname = "paper-tl"\n'
                    '[[strategies]]\nname = "lora"\n')
    sources = {run.label: (run.lr_source, run.train.lr) for run in expand(load_suite(path))}
    assert sources["head-only"] == ("tuned", 1e-3) and sources["full"] == ("suite", 1e-3)
    assert sources["paper-tl"] == ("protocol", 1e-8)
    assert sources["lora-r4"][0] == "default"


@pytest.mark.parametrize("entry, message", [
    ('lr = {"1" = 0.002}\nlr_grid = [0.0001, 0.001]', "rates outside it"),
    ('lr = 0.001\nlr_grid = [0.0001, 0.001]', "per data fraction"),
    ('lr = {"0.5" = 0.001}', "one rate per data fraction"),
    ('lr = {"fast" = 0.001}', "must be a data fraction"),
])
def test_tuned_rates_must_be_per_fraction_and_on_their_grid(tmp_path: Path, entry: str, message: str):
    path = tmp_path / "s.toml"
    path.write_text('name = "s"\ndatasets = ["toy"]\nbackbones = ["cnn-small"]\n'
                    f'[[strategies]]\nname = "head-only"\n{entry}\n')
    with pytest.raises(SuiteError, match=message):
        load_suite(path)


def test_a_rate_tuned_for_one_fraction_is_not_called_tuned_in_another(tmp_path: Path):
    path = tmp_path / "s.toml"
    path.write_text('name = "s"\ndatasets = ["toy"]\nbackbones = ["cnn-small"]\ndata_fractions = [0.5, 1.0]\n'
                    '[[strategies]]\nname = "full"\nlr = {"0.5" = 0.01, "1" = 0.001}\nlr_grid = [0.001, 0.01]\n'
                    '[[strategies]]\nname = "head-only"\nlr = 0.001\n')
    runs = {(run.label, run.data_fraction): run for run in expand(load_suite(path))}
    assert runs["full", 0.5].train.lr == 0.01 and runs["full", 1.0].train.lr == 0.001
    assert runs["full", 0.5].lr_source == runs["full", 1.0].lr_source == "tuned"
    assert runs["head-only", 0.5].lr_source == "suite" and runs["head-only", 0.5].lr_grid == ()


def test_tune_rejects_a_bad_grid(capsys):
    assert main(["tune", "tiny", "--grid", "1e-3,fast"]) == 2
    assert "'fast' is not a number" in capsys.readouterr().err
