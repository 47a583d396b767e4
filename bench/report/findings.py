"""Findings: a pre-specified family of paired comparisons, bootstrap p-values with Holm correction, in sentences.

Per (dataset, backbone, data fraction) cell, on the spec-z test set against the label and the photo-z test
set against the true redshift (where known), whole set and paper range, for each metric of TABLE_METRICS:
every variant vs head-only, every variant vs paper-tl (when run), each LoRA rank vs full, and combined vs the
adapter that is best on validation loss (only when the records carry one; never chosen on test), and the
variant best on spec-z validation loss vs the template-fit reference (zpeft.report.references). Each
comparison is one paired bootstrap: the same galaxy resamples score both strategies, seed s is paired with
seed s and the per-resample difference is averaged over seeds, so the interval holds test sampling and seed
spread together. Holm's step-down correction runs over every comparison of the report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from zpeft.conventions import BASELINE_STRATEGY, TABLE_METRICS
from zpeft.metrics import METRICS, comparable, paper_range_mask
from zpeft.report.references import ROW_NAMES, TEMPLATE_FIT
from zpeft.report.render import Block
from zpeft.report.tables import CELL, ordered_variants
from zpeft.report.titles import TEST_SET_TITLES
from zpeft.run.records import TEMPLATE_SUFFIX, read_predictions, read_records, read_references

PAPER_TL = "paper-tl"  # the reference paper's transfer learning, compared with when such runs exist
# Strategies that are not parameter-efficient adaptations; every other one (LoRA, last-k: selective fine-tuning,
# a PEFT family of its own) is a candidate for "the best adapter" that `combined` is compared with.
NOT_ADAPTERS = ("zero-shot", BASELINE_STRATEGY, "full", "combined", PAPER_TL)
NOT_SPEC_VALIDATED = ("zero-shot", "combined")  # no validation loss, or one on the combined set, not the spec-z set
TEMPLATE_ROW = ROW_NAMES[TEMPLATE_FIT]  # the template-fit reference as the findings name it
# (test set, reference key in the references file, reference name in the results table)
TARGETS = (("spec", "spec", "label"), ("photo", "photo_true", "true"))
RANGE_TITLES = {"all": "whole range", "paper_range": "0.3 < z <= 1.5"}
FINDING_CELL = [*CELL, "data_fraction"]
_MAX_CHUNK_ELEMENTS = 1 << 22  # resampled galaxies per chunk: keeps temporaries to tens of MB at any test-set size


@dataclass(frozen=True)
class Comparison:
    """One pre-specified pair: variant `a` against variant `b`, and why it is in the family."""

    a: str
    b: str
    reason: str


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (same order as `p`): max over j <= i of (m - j) p_(j), capped at 1."""
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 1 or np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError(f"holm needs a 1-D array of p-values in [0, 1], got {p!r}")
    m = p.size
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(stepped, 1.0)
    return out


def bootstrap_p(diffs: np.ndarray) -> float:
    """Two-sided p of a zero difference from the bootstrap distribution's normal approximation, 2 Phi(-|mean| / sd).

    Not the share of resamples past zero: that cannot go below 1/n_boot, and a Holm family of m
    comparisons needs p < alpha / m, which a few hundred comparisons and 1000 resamples never reach.
    """
    from scipy.stats import norm

    diffs = np.asarray(diffs, dtype=np.float64)
    mean, sd = float(np.mean(diffs)), float(np.std(diffs, ddof=1)) if diffs.size > 1 else 0.0
    if sd == 0.0:
        return 1.0 if mean == 0.0 else 0.0
    return float(min(1.0, 2.0 * norm.sf(abs(mean) / sd)))


def family(variants: dict[str, str], validation: dict[str, float]) -> tuple[list[Comparison], list[str]]:
    """The pre-specified comparisons among `variants` (variant -> strategy) and notes on what was left out.

    `validation` maps variant -> validation score (lower is better, e.g. best validation loss); combined is
    compared with the best adapter on it, and not at all when an adapter lacks one.
    """
    pairs: list[Comparison] = []
    notes: list[str] = []
    by_strategy: dict[str, list[str]] = {}
    for v, s in variants.items():
        by_strategy.setdefault(s, []).append(v)
    for reference, reason in ((BASELINE_STRATEGY, "vs head-only"), (PAPER_TL, "vs paper-tl")):
        for b in by_strategy.get(reference, []):
            pairs += [Comparison(a, b, reason) for a in variants if variants[a] != reference]
    if BASELINE_STRATEGY not in by_strategy:
        notes.append(f"no {BASELINE_STRATEGY} runs: no comparisons with it")
    for b in by_strategy.get("full", []):
        pairs += [Comparison(a, b, "LoRA rank vs full") for a in by_strategy.get("lora", [])]
    adapters = [v for v, s in variants.items() if s not in NOT_ADAPTERS]
    for a in by_strategy.get("combined", []):
        if not adapters:
            notes.append(f"{a}: no adapter to compare with")
        elif (best := best_on_validation(adapters, validation)) is None:
            notes.append(f"{a} vs the best adapter: left out, the records carry no validation metric to choose the "
                         "best adapter on (choosing on the test set would bias the comparison)")
        else:
            pairs.append(Comparison(a, best, "combined vs the adapter best on validation loss"))
    seen, unique = set(), []
    for c in pairs:
        if (c.a, c.b) not in seen:
            seen.add((c.a, c.b))
            unique.append(c)
    return unique, notes


def best_on_validation(candidates: list[str], validation: dict[str, float]) -> str | None:
    """The candidate with the lowest validation score; None when there is none or any lacks a finite score."""
    if not candidates or any(not math.isfinite(validation.get(v, math.nan)) for v in candidates):
        return None
    return min(candidates, key=lambda v: validation[v])


def template_comparison(variants: dict[str, str], validation: dict[str, float]) -> tuple[Comparison | None, str]:
    """The variant best on spec-z validation loss against the template fit, or None and why it is left out.

    Candidates are the variants validated on the spec-z validation set: every trained one bar combined
    (whose validation loss is on the combined set); zero-shot trains nothing and has none.
    """
    candidates = [v for v, s in variants.items() if s not in NOT_SPEC_VALIDATED]
    best = best_on_validation(candidates, validation)
    if best is None:
        return None, (f"best variant vs {TEMPLATE_ROW}: left out, the records carry no validation metric for "
                      "every candidate (choosing on the test set would bias the comparison)")
    return Comparison(best, TEMPLATE_ROW, "best on validation loss vs template-fit"), ""


def resampled_metrics(preds: dict[str, np.ndarray], z_ref: np.ndarray, metrics: tuple[str, ...], n_boot: int,
                      seed: int) -> dict[str, dict[str, np.ndarray]]:
    """Per key of `preds`: each metric on the same `n_boot` galaxy resamples (index arrays shared by all keys)."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    n = len(z_ref)
    chunk = max(1, _MAX_CHUNK_ELEMENTS // n)
    parts: dict[str, dict[str, list]] = {k: {m: [] for m in metrics} for k in preds}
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_boot - start), n))
        ref = z_ref[idx]
        for key, pred in preds.items():
            err = pred[idx] - ref
            dz = err / (1.0 + ref)
            for m in metrics:
                parts[key][m].append(METRICS[m].rows(dz, err))
    return {k: {m: np.concatenate(v) for m, v in by_metric.items()} for k, by_metric in parts.items()}


def _fold(metric: str, values: np.ndarray) -> np.ndarray:
    return np.abs(values) if METRICS[metric].direction == "abs" else values


def compare_block(runs: dict[str, dict[int, np.ndarray]], z_ref: np.ndarray, comparisons: list[Comparison],
                  metrics: tuple[str, ...], *, level: float, n_boot: int, seed: int = 0) -> pd.DataFrame:
    """Every comparison x metric on one test set and range: diff a - b (|.| for biases), interval and raw p.

    `runs`: variant -> seed -> predictions aligned with `z_ref`. Seeds are paired (a's seed s with b's);
    per shared resample the differences are averaged over common seeds. Pairs without a common seed are
    left out.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"interval level must be between 0 and 1, got {level}")
    z_ref = np.asarray(z_ref, dtype=np.float64)
    needed = {(v, s) for c in comparisons for v in (c.a, c.b) for s in _common_seeds(runs, c)}
    preds = {key: np.asarray(runs[key[0]][key[1]], dtype=np.float64) for key in sorted(needed)}
    for (v, s), p in preds.items():
        if p.shape != z_ref.shape:
            raise ValueError(f"{v} seed {s}: {p.size} predictions for {z_ref.size} reference redshifts")
    boot = resampled_metrics(preds, z_ref, metrics, n_boot, seed) if preds else {}
    point = {key: {m: float(METRICS[m].rows(*_residuals(p, z_ref))) for m in metrics} for key, p in preds.items()}
    q = ((1.0 - level) / 2.0, (1.0 + level) / 2.0)
    rows = []
    for c in comparisons:
        seeds = _common_seeds(runs, c)
        if not seeds:
            continue
        for m in metrics:
            per_resample = np.mean([_fold(m, boot[(c.a, s)][m]) - _fold(m, boot[(c.b, s)][m]) for s in seeds], axis=0)
            value_a = float(np.mean([comparable(m, point[(c.a, s)][m]) for s in seeds]))
            value_b = float(np.mean([comparable(m, point[(c.b, s)][m]) for s in seeds]))
            lo, hi = np.quantile(per_resample, q)
            rows.append({"a": c.a, "b": c.b, "reason": c.reason, "metric": m, "seeds": len(seeds),
                         "value_a": value_a, "value_b": value_b, "diff": value_a - value_b, "lo": float(lo),
                         "hi": float(hi), "p": bootstrap_p(per_resample)})
    return pd.DataFrame(rows)


def _residuals(pred: np.ndarray, z_ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    err = pred - z_ref
    return err / (1.0 + z_ref), err


def _common_seeds(runs: dict[str, dict[int, np.ndarray]], c: Comparison) -> list[int]:
    return sorted(set(runs.get(c.a, {})) & set(runs.get(c.b, {})))


def with_holm(frame: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """`frame` with `holm_p` (Holm over all its rows: the report's family) and `significant` (holm_p < alpha)."""
    out = frame.copy()
    out["holm_p"] = holm(out["p"].to_numpy()) if len(out) else []
    out["significant"] = out["holm_p"] < alpha
    return out


def compute_findings(main: pd.DataFrame, results_dir: Path, level: float, n_boot: int,
                     progress: bool) -> tuple[pd.DataFrame, list[str]]:
    """Every comparison of the report's family with Holm-adjusted p (`1 - level` is the family-wise error rate).

    Returns one row per cell x test set x range x comparison x metric, and notes on what was skipped.
    """
    notes: list[str] = []
    frames = []
    if main.empty:
        return pd.DataFrame(), ["no finished runs: no comparisons"]
    validation = validation_scores(results_dir)
    cells = list(main.groupby(FINDING_CELL))
    jobs = []
    for key, cell in cells:
        name = " / ".join(str(k) for k in key[:2])
        try:
            references = read_references(results_dir, key[0])
        except FileNotFoundError:
            notes.append(f"{name}: no test-set references in the results directory, no comparisons")
            continue
        runs_table = cell.drop_duplicates("run_id")
        strategies = dict(zip(runs_table["variant"], runs_table["strategy"]))
        order = [v for v in ordered_variants(runs_table) if v in strategies]
        variant_scores = runs_table.assign(val=runs_table["run_id"].map(validation)).groupby("variant")["val"].mean()
        comparisons, cell_notes = family({v: strategies[v] for v in order}, variant_scores.to_dict())
        vs_template, why = template_comparison({v: strategies[v] for v in order}, variant_scores.to_dict())
        notes += [f"{name}: {n}" for n in [*cell_notes, why] if n]
        predictions = {}
        for run_id in runs_table["run_id"]:
            try:
                predictions[run_id] = read_predictions(results_dir, run_id)
            except FileNotFoundError:
                notes.append(f"{name}: run {run_id} has no predictions file, left out")
        for test_set, ref_key, reference in TARGETS:
            if ref_key not in references:
                continue
            runs: dict[str, dict[int, np.ndarray]] = {}
            for _, r in runs_table.iterrows():
                pred = predictions.get(r["run_id"], {}).get(test_set)
                if pred is not None:
                    runs.setdefault(r["variant"], {})[int(r["seed"])] = pred
            target_comparisons = comparisons
            template = references.get(test_set + TEMPLATE_SUFFIX)
            if vs_template is not None and template is None:
                notes.append(f"{name}: no template-fit photo-z for the {test_set} test set, no comparison with it")
            elif vs_template is not None:  # one array for every seed: the seed-averaged difference is A's mean - it
                runs[TEMPLATE_ROW] = {s: template for s in runs.get(vs_template.a, {})}
                target_comparisons = [*comparisons, vs_template]
            jobs.append((key, test_set, reference, references[ref_key], runs, target_comparisons))
    with tqdm(total=len(jobs) * 2, desc="findings bootstrap", disable=not progress) as bar:
        for key, test_set, reference, z_ref, runs, comparisons in jobs:
            for range_ in ("all", "paper_range"):
                mask = paper_range_mask(z_ref) if range_ == "paper_range" else np.ones(len(z_ref), dtype=bool)
                bar.update()
                if not mask.any():
                    continue
                block = compare_block({v: {s: p[mask] for s, p in by_seed.items()} for v, by_seed in runs.items()},
                                      z_ref[mask], comparisons, TABLE_METRICS, level=level, n_boot=n_boot)
                if len(block):
                    frames.append(block.assign(**dict(zip(FINDING_CELL, key)), test_set=test_set,
                                               reference=reference, range=range_))
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return with_holm(frame, 1.0 - level) if len(frame) else frame, notes


def validation_scores(results_dir: Path) -> dict[str, float]:
    """Per run id: its best (lowest) validation loss from the training history; absent when not recorded."""
    scores = {}
    for record in read_records(results_dir):
        losses = [h.get("val_loss") for h in record.history if isinstance(h, dict)]
        losses = [v for v in losses if isinstance(v, (int, float)) and math.isfinite(v)]
        if losses:
            scores[record.run_id] = float(min(losses))
    return scores


def sentence(row: pd.Series, level: float) -> str:
    """One claim in words: the test set and range, both values, the difference, interval and Holm verdict."""
    where = f"{TEST_SET_TITLES.get(row['test_set'], row['test_set'])} ({RANGE_TITLES[row['range']]})"
    name = f"|{row['metric']}|" if METRICS[row["metric"]].direction == "abs" else row["metric"]
    side = "lower than" if row["diff"] < 0 else "higher than" if row["diff"] > 0 else "equal to"
    verdict = f"Holm-adjusted p = {_p(row['holm_p'])} (significant)" if row["significant"] else \
        f"not significant (Holm p = {_p(row['holm_p'])})"
    return (f"On the {where}, {row['a']} has {name} {row['value_a']:.4f}, {side} {row['b']} ({row['value_b']:.4f}): "
            f"difference {row['diff']:+.4f}, {level:.0%} paired interval [{row['lo']:+.4f}, {row['hi']:+.4f}], "
            f"{verdict}.")


def _p(p: float) -> str:
    return f"{p:.2g}" if p < 0.01 else f"{p:.2f}"


def findings_table(frame: pd.DataFrame, level: float) -> pd.DataFrame:
    """The compact table of every comparison: test set, range, A, B, metric, diff, interval, p, Holm p, verdict."""
    return pd.DataFrame({
        "test set": frame["test_set"], "range": frame["range"], "A": frame["a"], "B": frame["b"],
        "metric": frame["metric"], "diff": frame["diff"].map("{:+.4f}".format),
        f"{level:.0%} interval": [f"[{lo:+.4f}, {hi:+.4f}]" for lo, hi in zip(frame["lo"], frame["hi"])],
        "p": frame["p"].map(_p), "Holm p": frame["holm_p"].map(_p),
        "verdict": ["A better" if s and d < 0 else "A worse" if s else "n.s."
                    for s, d in zip(frame["significant"], frame["diff"])],
    })


def pareto_front(points: pd.DataFrame, cost: str, value: str) -> list[str]:
    """Index labels of `points` not dominated on (cost, value), both lower-is-better, in order of cost."""
    ordered = points.sort_values([cost, value])
    front, best = [], math.inf
    for label, row in ordered.iterrows():
        if row[value] < best:
            front.append(label)
            best = row[value]
    return front


def recommendation(main: pd.DataFrame, frame: pd.DataFrame) -> list[str]:
    """Per cell: the Pareto fronts of (trainable_params, sigma_nmad) and (train_seconds, sigma_nmad) on the
    spec-z test set, each member named with its Holm verdict against head-only."""
    spec = main[(main["test_set"] == "spec") & (main["reference"] == "label") & (main["range"] == "all")]
    out = []
    for key, cell in spec.groupby(FINDING_CELL):
        points = cell.groupby("variant")[["trainable_params", "train_seconds", "sigma_nmad"]].mean()
        verdicts = _vs_baseline(frame, key)
        parts = []
        for cost, title in (("trainable_params", "trainable parameters"), ("train_seconds", "training time")):
            members = [f"{v} ({verdicts.get(v, 'not compared with head-only')})"
                       for v in pareto_front(points, cost, "sigma_nmad")]
            parts.append(f"on {title} against sigma_nmad the front is " + ", ".join(members))
        prefix = f"{key[0]} / {key[1]} (data fraction {key[2]:g}): " if spec.groupby(FINDING_CELL).ngroups > 1 else ""
        out.append(prefix + "; ".join(parts) + ".")
    return out


def _vs_baseline(frame: pd.DataFrame, key: tuple) -> dict[str, str]:
    if frame.empty:
        return {}
    rows = frame[(frame["dataset"] == key[0]) & (frame["backbone"] == key[1]) & (frame["data_fraction"] == key[2])
                 & (frame["test_set"] == "spec") & (frame["range"] == "all") & (frame["metric"] == "sigma_nmad")
                 & (frame["reason"] == "vs head-only")]
    out = {}
    for _, r in rows.iterrows():
        word = "significantly better than" if r["diff"] < 0 else "significantly worse than"
        out[r["a"]] = f"{word} head-only" if r["significant"] else "not significantly different from head-only"
        out[r["b"]] = "the baseline"
    return out


def findings_sentences(frame: pd.DataFrame, level: float) -> list[Block]:
    """One paragraph per claim, under a heading per cell when there are several cells."""
    blocks = []
    if frame.empty:
        return blocks
    cells = frame.groupby(FINDING_CELL, sort=False)
    for key, cell in cells:
        if cells.ngroups > 1:
            blocks.append(Block("h3", f"{key[0]} / {key[1]} (data fraction {key[2]:g})"))
        blocks += [Block("p", sentence(r, level)) for _, r in cell.iterrows()]
    return blocks


def findings_section(frame: pd.DataFrame, notes: list[str], ok: pd.DataFrame, level: float,
                     n_boot: int) -> list[Block]:
    """The report's "Findings" section from `compute_findings`' frame: method, one sentence per claim, the table
    of all, a recommendation per cell and data fraction."""
    blocks = [Block("h2", "Findings"), Block("p", _method(level, n_boot, len(frame)))]
    if notes:
        blocks.append(Block("p", "Left out: " + "; ".join(notes) + "."))
    if frame.empty:
        return blocks + [Block("p", "No comparisons could be made.")]
    blocks += findings_sentences(frame, level)
    blocks.append(Block("h3", "All comparisons"))
    blocks.append(Block("table", table=findings_table(frame, level)))
    blocks.append(Block("h3", "Recommendation"))
    blocks += [Block("p", RECOMMENDATION_INTRO + line) for line in recommendation(ok, frame)]
    return blocks


RECOMMENDATION_INTRO = ("Pareto fronts among the variants (lower cost and lower sigma_nmad on the spec-z test set, "
                        "whole range; mean over seeds), each member with its Holm verdict against head-only: ")


def _method(level: float, n_boot: int, count: int) -> str:
    return (f"A family of {count} pre-specified comparisons, fixed before looking at test results: every variant "
            f"against head-only, every variant against paper-tl (when run), each LoRA rank against full, and "
            f"combined against the adapter with the lowest validation loss (left out when the records carry none), "
            f"the variant with the lowest spec-z validation loss against the template-fit reference (where the "
            f"test sets carry a template-fit photo-z), "
            f"per metric ({', '.join(TABLE_METRICS)}; |bias| for bias, so a negative difference means A is better), "
            f"on the spec-z test set against the label and the photo-z test set against the true redshift, whole "
            f"range and 0.3 < z <= 1.5. Each is one paired bootstrap ({n_boot} resamples of the same galaxies for "
            f"both strategies; seed s of A paired with seed s of B, the per-resample difference averaged over "
            f"seeds), so the {level:.0%} interval holds test-set sampling and seed spread together. p is the "
            f"two-sided p of the bootstrap distribution's normal approximation, 2 Phi(-|mean| / sd); Holm's step-down correction over the whole family keeps "
            f"the chance of any false claim at {1 - level:.0%}.")
