"""Findings: a small primary family of paired comparisons fixed in advance, with Holm verdicts; all else exploratory.

Primary (the benchmark's question, at most PRIMARY_MAX comparisons per report): per regime (dataset, backbone and
spec-z training size), on the spec-z test set against its labels over the whole range, every variant against tuned
head-only and against zero-shot, and combined against the adapter best on validation loss (never chosen on test).
No mirrored pair (head-only vs zero-shot is tested once) and no pair null by construction (paper-tl, the reference
paper's lr 1e-8 transfer learning, against zero-shot). The metric is sigma_nmad; |bias| and outlier_015 join the
family, each for every pair, only while the family stays within PRIMARY_MAX. Verdicts are Holm's step-down at
family-wise error 1 - level, each printed with its interval at the level of its Holm step.

Exploratory: the same pairs on the other metrics, test sets and ranges, each LoRA rank against full, the variant
best on validation against the template fit, and the decomposition steps paper-tl -> zero-shot -> head-only; each
an estimate with its `level` interval and no verdict. Every interval holds seed spread and test-set sampling
(zpeft.report.resampling).
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
from zpeft.report.resampling import (
    bootstrap_p,
    draw_seeds,
    fold,
    galaxy_resamples,
    holm,
    holm_stepdown,
    min_resamples,
    percentile_interval,
    seed_averaged,
    seed_draws,
)
from zpeft.report.tables import ordered_variants, regime_sizes
from zpeft.run.records import TEMPLATE_SUFFIX, read_predictions, read_records, read_references

ZERO_SHOT = "zero-shot"
PAPER_TL = "paper-tl"  # the reference paper's transfer learning (lr 1e-8): against zero-shot it is null by design
# Strategies that are not parameter-efficient adaptations; every other one (LoRA, last-k: selective fine-tuning,
# a PEFT family of its own) is a candidate for "the best adapter" that `combined` is compared with.
NOT_ADAPTERS = (ZERO_SHOT, BASELINE_STRATEGY, "full", "combined", PAPER_TL)
NOT_SPEC_VALIDATED = (ZERO_SHOT, "combined")  # no validation loss, or one on the combined set, not the spec-z set
TEMPLATE_ROW = ROW_NAMES[TEMPLATE_FIT]  # the template-fit reference as the findings name it
PRIMARY_MAX = 48
PRIMARY_TARGET = ("spec", "label", "all")  # (test set, reference, range) of the primary family
PRIMARY_METRICS = ("sigma_nmad", "bias", "outlier_015")  # in priority order: a metric joins for every pair or not
VS_HEAD = "vs head-only"
VS_ZERO = "vs zero-shot"
VS_BEST = "combined vs the adapter best on validation loss"
# (test set, reference key in the references file, reference name in the results table)
TARGETS = (("spec", "spec", "label"), ("photo", "photo_true", "true"))
RANGE_TITLES = {"all": "whole range", "paper_range": "0.3 < z <= 1.5"}
FINDING_CELL = ["dataset", "backbone", "data_fraction"]
DRAW_COLUMNS = ("draws", "draws_a", "draws_b")  # per-replicate arrays, kept in memory, never written


@dataclass(frozen=True)
class Comparison:
    """One pair: variant `a` against variant `b`, and why it is compared."""

    a: str
    b: str
    reason: str


def _by_strategy(variants: dict[str, str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for v, s in variants.items():
        out.setdefault(s, []).append(v)
    return out


def primary_pairs(variants: dict[str, str], validation: dict[str, float]) -> tuple[list[Comparison], list[str]]:
    """The primary pairs among `variants` (variant -> strategy, in reading order), in priority order, and notes.

    `validation` maps variant -> validation score (lower is better); combined meets the adapter best on it, and
    no adapter at all when one lacks a score.
    """
    by_strategy = _by_strategy(variants)
    pairs: list[Comparison] = []
    notes: list[str] = []
    for b in by_strategy.get(BASELINE_STRATEGY, []):
        pairs += [Comparison(a, b, VS_HEAD) for a, s in variants.items() if s not in (BASELINE_STRATEGY, ZERO_SHOT)]
    if BASELINE_STRATEGY not in by_strategy:
        notes.append(f"no {BASELINE_STRATEGY} runs: no comparisons with it")
    adapters = [v for v, s in variants.items() if s not in NOT_ADAPTERS]
    for a in by_strategy.get("combined", []):
        if not adapters:
            notes.append(f"{a}: no adapter to compare with")
        elif (best := best_on_validation(adapters, validation)) is None:
            notes.append(f"{a} vs the best adapter: left out, the records carry no validation metric to choose the "
                         "best adapter on (choosing on the test set would bias the comparison)")
        else:
            pairs.append(Comparison(a, best, VS_BEST))
    for b in by_strategy.get(ZERO_SHOT, []):
        pairs += [Comparison(a, b, VS_ZERO) for a, s in variants.items() if s not in (ZERO_SHOT, PAPER_TL)]
    return _unique(pairs), notes


def exploratory_pairs(variants: dict[str, str], validation: dict[str, float]) -> list[Comparison]:
    """Pairs only ever estimated: each LoRA rank against full and against paper-tl (the reference paper's claim),
    and paper-tl -> zero-shot (the decomposition's first step, null by construction, shown to make that visible)."""
    by_strategy = _by_strategy(variants)
    pairs = [Comparison(a, b, "LoRA rank vs full") for b in by_strategy.get("full", [])
             for a in by_strategy.get("lora", [])]
    pairs += [Comparison(a, b, "LoRA vs paper-tl (the reference paper's claim)") for b in by_strategy.get(PAPER_TL, [])
              for a in by_strategy.get("lora", [])]
    pairs += [Comparison(a, b, "decomposition: paper-tl -> zero-shot") for a in by_strategy.get(ZERO_SHOT, [])
              for b in by_strategy.get(PAPER_TL, [])]
    return _unique(pairs)


def _unique(pairs: list[Comparison]) -> list[Comparison]:
    """First of each unordered pair: (a, b) and (b, a) are one comparison."""
    seen, out = set(), []
    for c in pairs:
        if c.a != c.b and frozenset((c.a, c.b)) not in seen:
            seen.add(frozenset((c.a, c.b)))
            out.append(c)
    return out


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


def primary_metrics(pairs_per_regime: list[int]) -> tuple[str, ...]:
    """The PRIMARY_METRICS that fit: each joins for every primary pair of every regime while the total stays
    within PRIMARY_MAX (sigma_nmad always, truncated by `truncate_primary` if even it does not fit)."""
    total = sum(pairs_per_regime)
    chosen = [PRIMARY_METRICS[0]]
    for metric in PRIMARY_METRICS[1:]:
        if total * (len(chosen) + 1) > PRIMARY_MAX:
            break
        chosen.append(metric)
    return tuple(chosen)


@dataclass
class Resampled:
    """One test set and range of one regime: every (variant, seed)'s metrics on shared galaxy resamples."""

    point: dict  # (variant, seed) -> metric -> value on the whole sample
    boot: dict  # (variant, seed) -> metric -> (B,) values on the shared galaxy resamples
    uniform: np.ndarray  # (B, max seeds): the seed draws' source, shared by every pair of the block
    n_boot: int

    def seeds(self, *variants: str) -> list[int]:
        common = None
        for v in variants:
            mine = {s for (w, s) in self.point if w == v}
            common = mine if common is None else common & mine
        return sorted(common or [])

    def variant_draws(self, variant: str, metric: str, seeds: list[int], folded: bool) -> np.ndarray:
        """Per replicate, the variant's metric averaged over the drawn seeds (|.| first for biases if `folded`)."""
        per_seed = np.stack([self.boot[variant, s][metric] for s in seeds])
        per_seed = fold(metric, per_seed) if folded else per_seed
        return seed_averaged(per_seed, draw_seeds(self.uniform, len(seeds)))

    def point_values(self, variant: str, metric: str, seeds: list[int], folded: bool) -> np.ndarray:
        values = np.array([self.point[variant, s][metric] for s in seeds])
        return np.array([comparable(metric, v) for v in values]) if folded else values


def resample(runs: dict[str, dict[int, np.ndarray]], z_ref: np.ndarray, metrics: tuple[str, ...], n_boot: int,
             seed: int = 0) -> Resampled:
    """`runs`: variant -> seed -> predictions aligned with `z_ref`; every metric on the same galaxy resamples."""
    z_ref = np.asarray(z_ref, dtype=np.float64)
    preds = {(v, s): np.asarray(p, dtype=np.float64) for v, by_seed in runs.items() for s, p in by_seed.items()}
    for (v, s), p in preds.items():
        if p.shape != z_ref.shape:
            raise ValueError(f"{v} seed {s}: {p.size} predictions for {z_ref.size} reference redshifts")
    boot = galaxy_resamples(preds, z_ref, metrics, n_boot, seed) if preds else {}
    point = {}
    for key, p in preds.items():
        err = p - z_ref
        point[key] = {m: float(METRICS[m].rows(err / (1.0 + z_ref), err)) for m in metrics}
    max_seeds = max((len(by_seed) for by_seed in runs.values()), default=1)
    return Resampled(point, boot, seed_draws(n_boot, max_seeds, seed), n_boot)


def compare_block(runs: dict[str, dict[int, np.ndarray]], z_ref: np.ndarray, comparisons: list[Comparison],
                  metrics: tuple[str, ...], *, n_boot: int, seed: int = 0,
                  resampled: Resampled | None = None) -> pd.DataFrame:
    """Every comparison x metric on one test set and range: diff a - b (|.| for biases), its bootstrap SD, p and
    the per-replicate draws (columns DRAW_COLUMNS) from which intervals at any level are read.

    Seeds are paired (a's seed s with b's) and resampled together with the galaxies (zpeft.report.resampling).
    Pairs without a common seed are left out.
    """
    block = resampled or resample(runs, z_ref, metrics, n_boot, seed)
    rows = []
    for c in comparisons:
        seeds = block.seeds(c.a, c.b)
        if not seeds:
            continue
        for m in metrics:
            draws_a = block.variant_draws(c.a, m, seeds, folded=True)
            draws_b = block.variant_draws(c.b, m, seeds, folded=True)
            draws = draws_a - draws_b
            point_a = block.point_values(c.a, m, seeds, folded=True)
            point_b = block.point_values(c.b, m, seeds, folded=True)
            rows.append({"a": c.a, "b": c.b, "reason": c.reason, "metric": m, "seeds": len(seeds),
                         "n_boot": block.n_boot, "value_a": float(point_a.mean()), "value_b": float(point_b.mean()),
                         "diff": float(point_a.mean() - point_b.mean()), "sd": float(np.std(draws, ddof=1))
                         if draws.size > 1 else 0.0, "p": bootstrap_p(draws),
                         "draws": draws, "draws_a": draws_a, "draws_b": draws_b})
    return pd.DataFrame(rows)


def variant_summary(block: Resampled, variants: list[str], metrics: tuple[str, ...]) -> pd.DataFrame:
    """Per variant x metric (signed): mean over seeds, seed standard deviation and the joint seed-and-galaxy
    replicates of the seed mean (column `draws`), for tables of absolute values."""
    rows = []
    for v in variants:
        seeds = block.seeds(v)
        if not seeds:
            continue
        for m in metrics:
            values = block.point_values(v, m, seeds, folded=False)
            rows.append({"variant": v, "metric": m, "seeds": len(seeds), "value": float(values.mean()),
                         "std": float(values.std(ddof=1)) if values.size > 1 else math.nan,
                         "draws": block.variant_draws(v, m, seeds, folded=False)})
    return pd.DataFrame(rows)


@dataclass
class Findings:
    """Every comparison (column `family`: primary or exploratory), per-variant summaries, what was left out."""

    frame: pd.DataFrame
    summaries: pd.DataFrame
    notes: list[str]
    level: float
    n_boot_primary: int
    n_boot: int

    def primary(self) -> pd.DataFrame:
        return self.frame[self.frame["family"] == "primary"] if len(self.frame) else self.frame

    def exploratory(self) -> pd.DataFrame:
        return self.frame[self.frame["family"] == "exploratory"] if len(self.frame) else self.frame

    def csv(self) -> pd.DataFrame:
        """The frame as findings.csv holds it: without the per-replicate arrays."""
        return self.frame.drop(columns=[c for c in DRAW_COLUMNS if c in self.frame.columns])


def compute_findings(ok: pd.DataFrame, results_dir: Path, level: float, n_boot: int,
                     progress: bool) -> Findings:
    """The report's comparisons: the primary family with Holm verdicts at family-wise error 1 - level, and the
    exploratory estimates with `level` intervals. The primary target's resamples number at least what Holm's
    smallest level needs (resampling.min_resamples), so every primary p and interval is resolvable."""
    alpha = 1.0 - level
    notes: list[str] = []
    if ok.empty:
        return Findings(pd.DataFrame(), pd.DataFrame(), ["no finished runs: no comparisons"], level, n_boot, n_boot)
    validation = validation_scores(results_dir)
    sizes = regime_sizes(ok)
    jobs, primary_by_cell = [], {}
    for key, _ in sorted(ok.groupby(FINDING_CELL), key=lambda kv: (kv[0][:2], -kv[0][2])):
        cell = regime_runs(ok, key)
        size = sizes.get(key, math.nan)
        name = f"{key[0]} / {key[1]} (" + (f"{int(size):,} spec-z training galaxies)" if math.isfinite(size) else
                                            f"data fraction {key[2]:g})")
        try:
            references = read_references(results_dir, key[0])
        except FileNotFoundError:
            notes.append(f"{name}: no test-set references in the results directory, no comparisons")
            continue
        runs_table = cell.drop_duplicates("run_id")
        strategies = dict(zip(runs_table["variant"], runs_table["strategy"]))
        variants = {v: strategies[v] for v in ordered_variants(runs_table) if v in strategies}
        scores = runs_table.assign(val=runs_table["run_id"].map(validation)).groupby("variant")["val"].mean()
        primary, cell_notes = primary_pairs(variants, scores.to_dict())
        vs_template, why = template_comparison(variants, scores.to_dict())
        notes += [f"{name}: {n}" for n in [*cell_notes, why] if n]
        primary_by_cell[key] = primary
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
            extra = exploratory_pairs(variants, scores.to_dict())
            template = references.get(test_set + TEMPLATE_SUFFIX)
            if vs_template is not None and template is None:
                notes.append(f"{name}: no template-fit photo-z for the {test_set} test set, no comparison with it")
            elif vs_template is not None:  # one array for every seed: the template fit trains nothing
                runs[TEMPLATE_ROW] = {s: template for s in runs.get(vs_template.a, {})}
                extra = [*extra, vs_template]
            jobs.append((key, test_set, reference, references[ref_key], runs, primary, extra, list(variants)))
    chosen = primary_metrics([len(p) for p in primary_by_cell.values()])
    m_primary = min(PRIMARY_MAX, sum(len(p) for p in primary_by_cell.values()) * len(chosen))
    n_boot_primary = max(n_boot, min_resamples(max(m_primary, 1), alpha))
    frames, summaries = [], []
    with tqdm(total=len(jobs) * 2, desc="findings bootstrap", disable=not progress) as bar:
        for key, test_set, reference, z_ref, runs, primary, extra, order in jobs:
            for range_ in ("all", "paper_range"):
                bar.update()
                mask = paper_range_mask(z_ref) if range_ == "paper_range" else np.ones(len(z_ref), dtype=bool)
                if not mask.any():
                    continue
                is_primary = (test_set, reference, range_) == PRIMARY_TARGET
                block = resample({v: {s: p[mask] for s, p in by_seed.items()} for v, by_seed in runs.items()},
                                 z_ref[mask], TABLE_METRICS, n_boot_primary if is_primary else n_boot)
                where = dict(zip(FINDING_CELL, key), test_set=test_set, reference=reference, range=range_)
                rows = compare_block({}, z_ref[mask], [*primary, *extra], TABLE_METRICS, n_boot=block.n_boot,
                                     resampled=block)
                if len(rows):
                    primary_keys = {(c.a, c.b) for c in primary}
                    family = ["primary" if is_primary and m in chosen and (a, b) in primary_keys else "exploratory"
                              for a, b, m in zip(rows["a"], rows["b"], rows["metric"])]
                    frames.append(rows.assign(**where, n_spec_train=sizes.get(key, math.nan), family=family))
                summary = variant_summary(block, [v for v in order if v in runs], TABLE_METRICS)
                if len(summary):
                    summaries.append(summary.assign(**where, n_spec_train=sizes.get(key, math.nan)))
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    frame = truncate_primary(frame, notes)
    frame = with_verdicts(frame, level)
    summary_frame = pd.concat(summaries, ignore_index=True) if summaries else pd.DataFrame()
    return Findings(frame, summary_frame, notes, level, n_boot_primary, n_boot)


def regime_runs(ok: pd.DataFrame, key: tuple) -> pd.DataFrame:
    """The rows of one regime (dataset, backbone, data fraction), plus the dataset's runs that train nothing
    (zero-shot): those run once, recorded at fraction 1, and belong to every regime."""
    same = (ok["dataset"] == key[0]) & (ok["backbone"] == key[1])
    cell = ok[same & (ok["data_fraction"] == key[2])]
    untrained = ok[same & (ok["epochs"].fillna(0) <= 0) & ~ok["variant"].isin(set(cell["variant"]))]
    return pd.concat([cell, untrained]) if len(untrained) else cell


def truncate_primary(frame: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """At most PRIMARY_MAX primary rows: beyond it (in the fixed order regimes largest first, pairs by priority)
    rows become exploratory, and a note says how many."""
    if frame.empty:
        return frame
    primary = np.flatnonzero(frame["family"].to_numpy() == "primary")
    if primary.size > PRIMARY_MAX:
        frame = frame.copy()
        frame.loc[frame.index[primary[PRIMARY_MAX:]], "family"] = "exploratory"
        notes.append(f"{primary.size - PRIMARY_MAX} primary comparisons beyond the first {PRIMARY_MAX} were made "
                     "exploratory (the family is capped so that its tests keep their power)")
    return frame


def with_verdicts(frame: pd.DataFrame, level: float) -> pd.DataFrame:
    """`frame` with, per row, its interval `lo`, `hi` at `interval_level`, and for primary rows `holm_p`,
    `significant` and `detectable` (the smallest difference found with 80 % power at the row's level).

    Primary rows: Holm's step-down (resampling.holm_stepdown) over the whole primary family at family-wise
    error 1 - level; each interval is at its Holm step's level, so it excludes zero exactly when the row is
    significant. Exploratory rows: the `level` interval, no verdict.
    """
    from zpeft.report.resampling import detectable

    if frame.empty:
        return frame
    alpha = 1.0 - level
    out = frame.copy()
    out["interval_level"] = level
    out["holm_p"] = math.nan
    out["significant"] = pd.Series([pd.NA] * len(out), dtype="boolean")
    out["detectable"] = math.nan
    primary = np.flatnonzero(out["family"].to_numpy() == "primary")
    if primary.size:
        draws = [out["draws"].iloc[i] for i in primary]
        significant, levels = holm_stepdown(draws, alpha)
        out.loc[out.index[primary], "significant"] = significant
        out.loc[out.index[primary], "interval_level"] = 1.0 - levels
        out.loc[out.index[primary], "holm_p"] = holm(out["p"].to_numpy()[primary])
        out.loc[out.index[primary], "detectable"] = [detectable(sd, a) for sd, a in
                                                      zip(out["sd"].to_numpy()[primary], levels)]
    bounds = [percentile_interval(d, 1.0 - lv) for d, lv in zip(out["draws"], out["interval_level"])]
    out["lo"] = [b[0] for b in bounds]
    out["hi"] = [b[1] for b in bounds]
    return out


def validation_scores(results_dir: Path) -> dict[str, float]:
    """Per run id: its best (lowest) validation loss from the training history; absent when not recorded."""
    scores = {}
    for record in read_records(results_dir):
        losses = [h.get("val_loss") for h in record.history if isinstance(h, dict)]
        losses = [v for v in losses if isinstance(v, (int, float)) and math.isfinite(v)]
        if losses:
            scores[record.run_id] = float(min(losses))
    return scores


def p_text(p: float, n_boot: int) -> str:
    """A p-value as the resampling can carry it: at its floor 2 / (B + 1) written "<= 2/(B+1)" with B."""
    if not math.isfinite(p):
        return ""
    if p <= 2.0 / (n_boot + 1) + 1e-12:
        return f"≤ 2/{n_boot + 1}"
    return f"{p:.3g}"


def metric_name(metric: str) -> str:
    return f"|{metric}|" if METRICS[metric].direction == "abs" else metric


def interval_text(lo: float, hi: float, digits: int = 4) -> str:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "[unresolved: too few resamples]"
    return f"[{lo:+.{digits}f}, {hi:+.{digits}f}]"


def verdict_text(row: pd.Series) -> str:
    """A primary row's verdict: which side is better, or no difference found and the smallest it could detect."""
    if bool(row["significant"]):
        return "A better" if row["diff"] < 0 else "A worse"
    if row["detectable"] == 0 and row["diff"] == 0:  # e.g. a fine-tune that kept its start, against zero-shot
        return "no difference found (identical predictions in every seed and resample)"
    return f"no difference found (could detect ±{row['detectable']:.4f})"


def regime_title(row) -> str:
    n = row["n_spec_train"]
    size = f"{int(n):,} spec-z training galaxies" if isinstance(n, (int, float)) and math.isfinite(n) else \
        f"data fraction {row['data_fraction']:g}"
    return f"{row['dataset']} / {row['backbone']}, {size}"


def primary_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The primary family, one row per comparison: regime, pair, metric, difference, interval at its Holm level,
    that level, p, Holm p and verdict."""
    multi = frame[["dataset", "backbone"]].drop_duplicates().shape[0] > 1
    return pd.DataFrame({
        "N spec-z train": [regime_title(r) if multi else f"{int(r['n_spec_train']):,}"
                           if math.isfinite(r["n_spec_train"]) else f"fraction {r['data_fraction']:g}"
                           for _, r in frame.iterrows()],
        "A": frame["a"].to_numpy(), "B": frame["b"].to_numpy(),
        "metric": [metric_name(m) for m in frame["metric"]],
        "A - B": frame["diff"].map("{:+.4f}".format).to_numpy(),
        "interval": [interval_text(lo, hi) for lo, hi in zip(frame["lo"], frame["hi"])],
        "level": frame["interval_level"].map(lambda v: f"{100 * v:.2f} %").to_numpy(),
        "p": [p_text(p, b) for p, b in zip(frame["p"], frame["n_boot"])],
        "Holm p": [f"{p:.3g}" for p in frame["holm_p"]],
        "verdict": [verdict_text(r) for _, r in frame.iterrows()],
    })


def exploratory_table(frame: pd.DataFrame, level: float) -> pd.DataFrame:
    """Every exploratory estimate: regime, test set, range, pair, metric, difference and its `level` interval."""
    return pd.DataFrame({
        "N spec-z train": [f"{int(n):,}" if math.isfinite(n) else f"fraction {f:g}"
                           for n, f in zip(frame["n_spec_train"], frame["data_fraction"])],
        "test set": [f"{t} vs {r}" for t, r in zip(frame["test_set"], frame["reference"])],
        "range": frame["range"].map(RANGE_TITLES).to_numpy(),
        "A": frame["a"].to_numpy(), "B": frame["b"].to_numpy(),
        "metric": [metric_name(m) for m in frame["metric"]],
        "A - B": frame["diff"].map("{:+.4f}".format).to_numpy(),
        f"{level:.0%} interval": [interval_text(lo, hi) for lo, hi in zip(frame["lo"], frame["hi"])],
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


def method_text(findings: Findings) -> str:
    """How the primary family and the exploratory estimates are made, in one paragraph."""
    level, alpha = findings.level, 1.0 - findings.level
    count = len(findings.primary())
    return (f"Primary family: {count} comparisons (at most {PRIMARY_MAX}), fixed before any test result was read: "
            f"per regime, on the spec-z test set against its labels (whole range), every strategy against tuned "
            f"head-only and against zero-shot, and combined against the adapter with the lowest validation loss; "
            f"sigma_nmad, with |bias| and outlier_015 only where the family stays within {PRIMARY_MAX}. Head-only vs "
            f"zero-shot is tested once, and paper-tl vs zero-shot (null by construction) not at all. Each "
            f"difference A - B (negative: A better; |bias| compared by size) comes from a bootstrap that resamples "
            f"the test galaxies and the seeds together ({findings.n_boot_primary} replicates; the same galaxies and "
            f"seeds for A and B), so its interval holds test-set sampling and seed spread. p = 2 (c + 1) / (B + 1), "
            f"c the replicates on the far side of zero, so no p is below 2 / (B + 1). Holm's step-down keeps the "
            f"family-wise error at {alpha:.0%}; each interval is printed at the level of its Holm step (column "
            f"level), so it excludes zero exactly when the verdict is significant. \"No difference found\" gives the "
            f"smallest difference the test would find with 80 % power at that level (from the bootstrap standard "
            f"deviation): smaller differences may exist. Everything else (other metrics, test sets and ranges, "
            f"LoRA ranks vs full, the best variant vs the template fit) is exploratory: an estimate with its "
            f"{level:.0%} interval (at least {findings.n_boot} replicates), never a verdict, in the appendix.")
