"""The report's answer first: per regime the strategy to use at each budget and how sure that is, the photo-z-paper
table, and this run beside the reference paper (arXiv:2601.00146) with the decomposition of LoRA's gain.

Everything here is read from zpeft.report.findings' Findings (joint seed-and-galaxy bootstrap replicates) and the
reference rows of zpeft.report.references; nothing is recomputed from predictions.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from zpeft.conventions import BASELINE_STRATEGY, STOPPING_RULE
from zpeft.report import references as reference_rows
from zpeft.report.calibration import faint_verdict
from zpeft.report.findings import (
    FINDING_CELL,
    PAPER_TL,
    PRIMARY_TARGET,
    ZERO_SHOT,
    Findings,
    interval_text,
    metric_name,
    pareto_front,
    regime_runs,
    verdict_text,
)
from zpeft.report.render import Block
from zpeft.report.resampling import percentile_interval
from zpeft.report.tables import ordered_variants, regime_sizes
from zpeft.run.records import RunRecord

ANSWER_METRICS = ("sigma_nmad", "bias", "outlier_015")
PAPER = "reference paper (NeurIPS ML4PS 2025 workshop, arXiv:2601.00146: ResNet18 + MLP on HSC grizy 64 x 64 " \
        "cutouts)"
# What the paper reports that this project states (README): LoRA against its transfer learning, 0.3 < z <= 1.5.
PAPER_RATIOS = {"sigma_nmad": 2.2, "bias": 2.5}
PAPER_RANK = 4  # the paper's LoRA: rank 4, alpha 16


def _where(frame: pd.DataFrame, key: tuple, target: tuple[str, str, str]) -> pd.DataFrame:
    if frame.empty:
        return frame
    mask = np.ones(len(frame), dtype=bool)
    for column, value in zip([*FINDING_CELL, "test_set", "reference", "range"], [*key, *target]):
        mask &= (frame[column] == value).to_numpy()
    return frame[mask]


def pair_draws(frame: pd.DataFrame, a: str, b: str, metric: str) -> tuple[float, np.ndarray] | None:
    """(A - B estimate, replicates) of one pair and metric in one block of the findings, either way round."""
    for x, y, sign in ((a, b, 1.0), (b, a, -1.0)):
        rows = frame[(frame["a"] == x) & (frame["b"] == y) & (frame["metric"] == metric)]
        if len(rows):
            row = rows.iloc[0]
            return sign * float(row["diff"]), sign * np.asarray(row["draws"])
    return None


def ratio_draws(frame: pd.DataFrame, a: str, b: str, metric: str) -> tuple[float, np.ndarray] | None:
    """(B / A estimate, replicates): how many times lower A's (folded) metric is than B's."""
    for x, y in ((a, b), (b, a)):
        rows = frame[(frame["a"] == x) & (frame["b"] == y) & (frame["metric"] == metric)]
        if len(rows):
            row = rows.iloc[0]
            va, vb = (row["value_a"], row["value_b"]) if x == a else (row["value_b"], row["value_a"])
            da, db = (row["draws_a"], row["draws_b"]) if x == a else (row["draws_b"], row["draws_a"])
            with np.errstate(divide="ignore", invalid="ignore"):
                return (vb / va if va else math.inf), np.asarray(db) / np.asarray(da)
    return None


def _delta(frame: pd.DataFrame, a: str, b: str, metric: str, alpha: float) -> str:
    if a == b:
        return "—"
    found = pair_draws(frame, a, b, metric)
    if found is None:
        return "n/a"
    diff, draws = found
    lo, hi = percentile_interval(draws, alpha)
    return f"{diff:+.4f} {interval_text(lo, hi)}"


def _params(value: float) -> str:
    if value <= 0:
        return "0 (no training)"
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.0f}"


def _seconds(value: float) -> str:
    return "0" if value <= 0 else f"{value:.3g} s"


def regimes(findings: Findings) -> list[tuple]:
    """The regimes (dataset, backbone, data fraction) of the primary target, largest spec-z training set first."""
    s = findings.summaries
    if s.empty:
        return []
    s = s[(s["test_set"] == PRIMARY_TARGET[0]) & (s["reference"] == PRIMARY_TARGET[1])
          & (s["range"] == PRIMARY_TARGET[2])]
    keys = s[[*FINDING_CELL, "n_spec_train"]].drop_duplicates()
    keys = keys.sort_values(["dataset", "backbone", "n_spec_train", "data_fraction"], ascending=[True, True, False,
                                                                                              False])
    return [tuple(r[c] for c in FINDING_CELL) for _, r in keys.iterrows()]


def regime_heading(key: tuple, sizes: dict, multi: bool) -> str:
    n = sizes.get(key, math.nan)
    size = f"{int(n):,} spec-z training galaxies" if math.isfinite(n) else f"spec-z data fraction {key[2]:g}"
    return f"{key[0]} / {key[1]}, {size}" if multi else size.capitalize()


def answer_blocks(ok: pd.DataFrame, findings: Findings, records: list[RunRecord]) -> list[Block]:
    """The answer box: per regime a table of the budget front, a "how sure" paragraph, and whether the most
    accurate strategy's error bars hold on faint galaxies."""
    level, alpha = findings.level, 1.0 - findings.level
    blocks = [Block("h2", "The answer")]
    keys = regimes(findings)
    if not keys:
        return blocks + [Block("p", "No comparisons could be made: no finished runs with test-set references.")]
    sizes = regime_sizes(ok)
    multi = len({k[:2] for k in keys}) > 1
    blocks.append(Block("p", f"Per regime (spec-z training galaxies), the strategies worth using at each budget: each "
                             "row is the lowest spec-z test sigma_nmad (mean over seeds, against the labels) that "
                             "many trainable parameters buy; no cheaper strategy is better. Δ: the row's strategy "
                             f"minus head-only (tuned transfer learning) or zero-shot, negative is better, with "
                             f"{level:.0%} intervals holding seed spread and test-set sampling (estimates; the "
                             "verdicts are in each \"how sure\" line)."))
    for key in keys:
        blocks += _regime_answer(ok, findings, records, key, regime_heading(key, sizes, multi), alpha)
    return blocks


def _points(ok: pd.DataFrame, findings: Findings, key: tuple) -> pd.DataFrame:
    """Per variant: mean trainable parameters, mean training seconds and the mean sigma_nmad over seeds."""
    summary = _where(findings.summaries, key, PRIMARY_TARGET)
    summary = summary[summary["metric"] == "sigma_nmad"].set_index("variant")
    runs = regime_runs(ok, key).drop_duplicates("run_id")
    costs = runs.groupby("variant")[["trainable_params", "train_seconds"]].mean()
    return costs.join(summary["value"].rename("sigma_nmad"), how="inner")


def _regime_answer(ok: pd.DataFrame, findings: Findings, records: list[RunRecord], key: tuple, heading: str,
                   alpha: float) -> list[Block]:
    frame = _where(findings.frame, key, PRIMARY_TARGET)
    points = _points(ok, findings, key)
    if points.empty:
        return [Block("h3", heading), Block("p", "No spec-z test results in this regime.")]
    front = pareto_front(points, "trainable_params", "sigma_nmad")
    variants = set(points.index)
    head = next((v for v in ordered_variants(ok[ok["variant"].isin(variants)]) if _strategy(ok, v) ==
                 BASELINE_STRATEGY), None)
    zero = next((v for v in variants if _strategy(ok, v) == ZERO_SHOT), None)
    summary = _where(findings.summaries, key, PRIMARY_TARGET).set_index(["variant", "metric"])
    rows = []
    for v in front:
        row = {"budget (trainable params)": _params(points.at[v, "trainable_params"]), "strategy": v,
               "training time": _seconds(points.at[v, "train_seconds"])}
        for m in ANSWER_METRICS:
            s = summary.loc[(v, m)]
            row[m] = _mean_std(s["value"], s["std"])
            for base, title in ((head, "head-only"), (zero, "zero-shot")):
                row[f"{metric_name(m)} Δ {title}"] = "n/a" if base is None else _delta(frame, v, base, m, alpha)
        rows.append(row)
    time_front = pareto_front(points, "train_seconds", "sigma_nmad")
    return [Block("h3", heading), Block("table", table=pd.DataFrame(rows), extra={"class": "answer"}),
            Block("p", "On training time instead of parameters the front is " + ", ".join(
                f"{v} ({_seconds(points.at[v, 'train_seconds'])})" for v in time_front) + "."),
            Block("p", how_sure(ok, findings, key, front, frame)),
            Block("p", "Error bars of the most accurate of these: "
                  + faint_verdict(records, front[-1], set(regime_runs(ok, key)["run_id"])))]


def _strategy(ok: pd.DataFrame, variant: str) -> str:
    return str(ok.loc[ok["variant"] == variant, "strategy"].iloc[0])


def _mean_std(value: float, std: float) -> str:
    return f"{value:.4f}" if not math.isfinite(std) else f"{value:.4f} ± {std:.4f}"


def convergence(ok: pd.DataFrame, key: tuple) -> dict:
    """Trained runs of a regime: how many, ended by the stopping rule, and the ones that never beat their start."""
    runs = regime_runs(ok, key).drop_duplicates("run_id")
    trained = runs[runs["ended_by"].fillna("").astype(str) != ""] if "ended_by" in runs else runs.iloc[:0]
    no_gain = trained[trained["best_epoch"].fillna(-1) == 0]
    return {"seeds": int(runs["seed"].nunique()), "trained": len(trained),
            "converged": int((trained["ended_by"] == STOPPING_RULE).sum()),
            "no_gain": [f"{r['variant']} seed {int(r['seed'])}" for _, r in no_gain.iterrows()]}


def how_sure(ok: pd.DataFrame, findings: Findings, key: tuple, front: list[str], frame: pd.DataFrame) -> str:
    """Seeds, convergence, and what the primary family found and could not detect for the front's strategies."""
    c = convergence(ok, key)
    parts = [f"How sure: {c['seeds']} seed(s); {c['converged']} of {c['trained']} trained runs ended by the "
             f"stopping rule (converged), {c['trained'] - c['converged']} at the epoch cap"]
    if c["no_gain"]:
        parts.append("no gain (best epoch 0: training never beat the starting weights, the run returns its start): "
                     + ", ".join(c["no_gain"]))
    primary = frame[(frame["family"] == "primary") & (frame["a"].isin(front) | frame["b"].isin(front))] \
        if len(frame) else frame
    found = [f"{r['a']} {'lower' if r['diff'] < 0 else 'higher'} {metric_name(r['metric'])} than {r['b']} "
             f"({r['diff']:+.4f} {interval_text(r['lo'], r['hi'])} at {100 * r['interval_level']:.2f} %)"
             for _, r in primary.iterrows() if bool(r["significant"])]
    missed = [f"{r['a']} vs {r['b']} on {metric_name(r['metric'])} "
              f"{verdict_text(r).removeprefix('no difference found ')}"
              for _, r in primary.iterrows() if not bool(r["significant"])]
    alpha = 1.0 - findings.level
    regime = frame[frame["family"] == "primary"] if len(frame) else frame
    if len(regime):
        parts.append(f"{int(regime['significant'].astype(bool).sum())} of this regime's {len(regime)} primary "
                     "comparisons are significant")
    if found:
        parts.append(f"the primary family (Holm, family-wise error {alpha:.0%}) found " + "; ".join(found))
    if missed:
        parts.append("found no difference for " + "; ".join(missed))
    if not found and not missed:
        parts.append("no primary comparison involves these strategies")
    return "; ".join(parts) + "."


def paper_style_table(findings: Findings, references: pd.DataFrame) -> list[Block]:
    """Strategies as rows, bias, sigma_nmad and outlier_015 as columns (mean ± seed std [interval]) per regime on
    the spec-z test set against its labels, the reference rows last; one interval level (references.LEVEL)."""
    level = reference_rows.LEVEL
    blocks = [Block("h2", "Results on the spec-z test set"),
              Block("p", f"Mean ± standard deviation over seeds, then the {level:.0%} interval of the seed mean "
                         "(seeds and test galaxies resampled together); the reference rows (not strategies, one "
                         f"fit each) carry their {level:.0%} bootstrap interval over the test galaxies. Whole test "
                         "set, against the spec-z labels; per-range and photo-z tables are further down.")]
    keys = regimes(findings)
    if not keys:
        return blocks + [Block("p", "No results.")]
    rows = []
    multi = len({k[:2] for k in keys}) > 1
    for key in keys:
        s = _where(findings.summaries, key, PRIMARY_TARGET)
        n = s["n_spec_train"].iloc[0]
        regime = (f"{key[0]} / {key[1]}, " if multi else "") + (f"{int(n):,}" if math.isfinite(n) else
                                                                f"fraction {key[2]:g}")
        for v in _in_order(s["variant"], findings):
            by_metric = s[s["variant"] == v].set_index("metric")
            row = {"N spec-z train": regime, "strategy": v, "seeds": int(by_metric["seeds"].iloc[0])}
            for m in ANSWER_METRICS:
                r = by_metric.loc[m]
                lo, hi = percentile_interval(r["draws"], 1.0 - level)
                row[m] = f"{_mean_std(r['value'], r['std'])} [{lo:.4f}, {hi:.4f}]"
            rows.append(row)
    datasets = {k[0] for k in keys}
    chosen = references[references["dataset"].isin(datasets) & (references["test_set"] == PRIMARY_TARGET[0])
                        & (references["reference"] == PRIMARY_TARGET[1]) & (references["range"] == PRIMARY_TARGET[2])] \
        if not references.empty else references
    for _, r in chosen.iterrows():
        row = {"N spec-z train": f"reference ({r['dataset']})" if multi else "reference",
               "strategy": reference_rows.ROW_NAMES.get(r["name"], r["name"]),
               "seeds": ""}
        for m in ANSWER_METRICS:
            row[m] = f"{r[m]:.4f} [{r[f'{m}_lo']:.4f}, {r[f'{m}_hi']:.4f}]" if np.isfinite(r[m]) else "n/a"
        rows.append(row)
    return blocks + [Block("table", table=pd.DataFrame(rows))]


def _in_order(variants: pd.Series, findings: Findings) -> list[str]:
    """Variants in the findings' reading order (the order of the summaries' first regime), then any others."""
    order = list(dict.fromkeys(findings.summaries["variant"]))
    return sorted(dict.fromkeys(variants), key=lambda v: order.index(v))


def paper_lora(variants: list[str], strategies: dict[str, str]) -> str | None:
    """The LoRA variant to set beside the paper's: rank PAPER_RANK if run, else the first LoRA variant."""
    loras = [v for v in variants if strategies.get(v) == "lora"]
    return next((v for v in loras if v == f"lora-r{PAPER_RANK}"), loras[0] if loras else None)


def reference_paper_blocks(ok: pd.DataFrame, findings: Findings) -> list[Block]:
    """This run's same comparisons beside the reference paper's claims, and the decomposition of LoRA's gain over
    the paper's transfer learning (paper-tl -> zero-shot -> head-only -> LoRA), on the spec-z test set in
    0.3 < z <= 1.5 at the largest spec-z training set."""
    level, alpha = findings.level, 1.0 - findings.level
    blocks = [Block("h2", "Against the reference paper")]
    keys = regimes(findings)
    if not keys:
        return blocks + [Block("p", "No results.")]
    key = keys[0]
    target = (PRIMARY_TARGET[0], PRIMARY_TARGET[1], "paper_range")
    frame = _where(findings.frame, key, target)
    summary = _where(findings.summaries, key, target)
    strategies = dict(zip(ok["variant"], ok["strategy"]))
    variants = list(dict.fromkeys(summary["variant"])) if len(summary) else []
    lora = paper_lora(variants, strategies)
    tl = next((v for v in variants if strategies.get(v) == PAPER_TL), None)
    zero = next((v for v in variants if strategies.get(v) == ZERO_SHOT), None)
    head = next((v for v in variants if strategies.get(v) == BASELINE_STRATEGY), None)
    combined = next((v for v in variants if strategies.get(v) == "combined"), None)
    blocks.append(Block("p", f"The {PAPER} reports, on 0.3 < z <= 1.5, LoRA with about "
                             f"{PAPER_RATIOS['bias']}x lower bias and {PAPER_RATIOS['sigma_nmad']}x lower scatter "
                             "than its transfer learning, and retraining on the combined data generalising best. "
                             "Its absolute sigma_nmad and bias of the base, transfer-learning, LoRA and combined "
                             "models are not reproduced here (not in the sources this project could check), so only "
                             "the ratios stand beside this run's. This run: spec-z test set against its labels, "
                             f"0.3 < z <= 1.5, {key[0]} / {key[1]} at its largest spec-z training set; {level:.0%} "
                             f"intervals (seeds and galaxies resampled together), estimates without verdicts."))
    rows = []
    for m in ("sigma_nmad", "bias"):
        found = ratio_draws(frame, lora, tl, m) if lora and tl else None
        if found is None:
            ours = "not run (needs paper-tl and LoRA runs)"
        else:
            lo, hi = percentile_interval(found[1][np.isfinite(found[1])], alpha)
            ours = f"{found[0]:.2f}x [{lo:.2f}, {hi:.2f}]"
        rows.append({"quantity": f"{metric_name(m)}: paper-tl / {lora or 'LoRA'}",
                     "paper": f"~{PAPER_RATIOS[m]}x", "this run": ours})
    by = summary.set_index(["variant", "metric"]) if len(summary) else summary
    for title, v in (("base (zero-shot)", zero), ("transfer learning (paper-tl)", tl), ("LoRA", lora),
                     ("combined", combined)):
        for m in ("sigma_nmad", "bias"):
            if v is None or (v, m) not in by.index:
                ours = "not run"
            else:
                r = by.loc[(v, m)]
                lo, hi = percentile_interval(r["draws"], alpha)
                ours = f"{r['value']:.4f} [{lo:.4f}, {hi:.4f}]"
            rows.append({"quantity": f"{m} of {title}" + (f" = {v}" if v and title == "LoRA" else ""),
                         "paper": "not reproduced here", "this run": ours})
    blocks.append(Block("table", table=pd.DataFrame(rows)))
    blocks += _decomposition(frame, [("paper-tl", tl), ("zero-shot", zero), ("head-only", head), ("LoRA", lora)],
                             level)
    return blocks


def _decomposition(frame: pd.DataFrame, chain: list[tuple[str, str | None]], level: float) -> list[Block]:
    alpha = 1.0 - level
    present = [(title, v) for title, v in chain if v is not None]
    if len(present) < 2:
        return [Block("p", "Decomposition not possible: fewer than two of paper-tl, zero-shot, head-only and LoRA ran.")]
    steps = list(zip(present, present[1:]))
    if len(present) > 2:
        steps.append((present[0], present[-1]))
    rows = []
    for (t0, v0), (t1, v1) in steps:
        row = {"step": f"{t0} ({v0}) -> {t1} ({v1})" + (" (total)" if (t0, v0) == present[0] and (t1, v1) ==
                                                          present[-1] and len(present) > 2 else "")}
        for m in ("sigma_nmad", "bias"):
            found = pair_draws(frame, v1, v0, m)
            if found is None:
                row[f"Δ {metric_name(m)}"] = "n/a"
            else:
                lo, hi = percentile_interval(found[1], alpha)
                row[f"Δ {metric_name(m)}"] = f"{found[0]:+.4f} {interval_text(lo, hi)}"
        rows.append(row)
    missing = [title for title, v in chain if v is None]
    text = (f"Where LoRA's gain over the paper's transfer learning comes from: each step's change (later minus "
            f"earlier, negative is better) with its {level:.0%} interval. paper-tl at lr 1e-8 barely moves the base "
            "model, so its step to zero-shot is near zero by construction; the step to tuned head-only is what a "
            "tuned learning rate alone buys; the last step is LoRA's own gain.")
    if missing:
        text += " Not run, so left out of the chain: " + ", ".join(missing) + "."
    return [Block("h3", "Decomposition: paper-tl -> zero-shot -> head-only -> LoRA"), Block("p", text),
            Block("table", table=pd.DataFrame(rows))]
