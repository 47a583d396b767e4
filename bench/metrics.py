"""Photo-z point metrics (defined in the README's Metrics section): each a small named unit, plus bootstrap intervals.

Every metric is a `Metric` registered in `METRICS` by name; `METRICS["sigma_nmad"](z_pred, z_ref)`
gives a float. Internally a metric works on rows of a 2-D array, so one bootstrap draw of
galaxy indices is scored by every metric at once without a Python loop over resamples.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import numpy as np

from zpeft.registry import Registry

Direction = Literal["lower", "abs"]

# (lo, hi] in z_ref: the reference paper's evaluation range.
PAPER_RANGE = (0.3, 1.5)
# Bins are (lo, hi] like the paper range; the lowest edge is included so z_ref == 0 is kept.
DEFAULT_EDGES = (0.0, 0.3, 0.6, 0.9, 1.2, 1.5, 2.0, 3.0, 6.0)

# Keeps one chunk of resampled dz (and its temporaries) to tens of MB for any test-set size.
_MAX_CHUNK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class Metric:
    """One named metric.

    `rows(dz, err)` takes dz = (z_pred - z_ref) / (1 + z_ref) and err = z_pred - z_ref with galaxies
    on the last axis and returns one value per row. `direction` says what "better" means:
    "lower" (smaller value is better) or "abs" (|value| closer to 0 is better, for signed biases).
    """

    name: str
    direction: Direction
    rows: Callable[[np.ndarray, np.ndarray], np.ndarray]
    doc: str

    def __call__(self, z_pred: np.ndarray, z_ref: np.ndarray) -> float:
        z_pred, z_ref = _checked(z_pred=z_pred, z_ref=z_ref)
        return float(self.rows(dz(z_pred, z_ref), z_pred - z_ref))


METRICS: Registry[Metric] = Registry("metric")

# While `_all_rows` scores one dz array with every metric, the partial results several metrics share (the median,
# sigma_iqr), computed once; identity of the array is the key, and `_all_rows` holds the array meanwhile. Per
# thread, so threads scoring at once never see each other's arrays.
_SHARING = threading.local()


def _shared(name: str, dz: np.ndarray, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """`compute()`, or its value already computed for this very `dz` array during `_all_rows`."""
    stack = getattr(_SHARING, "stack", None)
    if not stack or stack[-1][0] is not dz:
        return compute()
    store = stack[-1][1]
    if name not in store:
        store[name] = compute()
    return store[name]


def _metric(name: str, direction: Direction):
    """Decorator: register a row-wise metric under `name`; the module attribute becomes the `Metric`."""
    def add(rows: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Metric:
        METRICS.add(name, Metric(name, direction, rows, (rows.__doc__ or "").strip()))
        return METRICS[name]
    return add


def dz(z_pred: np.ndarray, z_ref: np.ndarray) -> np.ndarray:
    """Normalised residual (z_pred - z_ref) / (1 + z_ref), the quantity every scatter metric uses."""
    return (np.asarray(z_pred, dtype=np.float64) - z_ref) / (1.0 + np.asarray(z_ref, dtype=np.float64))


@_metric("bias", "abs")
def bias(dz: np.ndarray, err: np.ndarray) -> np.ndarray:
    """Median of dz: the robust systematic offset."""
    return _shared("median", dz, lambda: np.median(dz, axis=-1))


@_metric("bias_mean", "abs")
def bias_mean(dz: np.ndarray, err: np.ndarray) -> np.ndarray:
    """Mean of dz: the offset including outliers' pull."""
    return np.mean(dz, axis=-1)


@_metric("sigma_nmad", "lower")
def sigma_nmad(dz: np.ndarray, err: np.ndarray) -> np.ndarray:
    """1.4826 x median |dz - median(dz)|: robust scatter (astropy's mad_std uses 1.482602..., not 1.4826)."""
    centre = np.expand_dims(bias.rows(dz, err), -1)
    return 1.4826 * np.median(np.abs(dz - centre), axis=-1)


@_metric("sigma_iqr", "lower")
def sigma_iqr(dz: np.ndarray, err: np.ndarray) -> np.ndarray:
    """(P75 - P25) / 1.349 of dz, percentiles by numpy's default linear interpolation."""
    def compute() -> np.ndarray:
        p25, p75 = np.percentile(dz, [25.0, 75.0], axis=-1)
        return (p75 - p25) / 1.349
    return _shared("sigma_iqr", dz, compute)


@_metric("outlier_015", "lower")
def outlier_015(dz: np.ndarray, err: np.ndarray) -> np.ndarray:
    """Fraction with |dz| > 0.15."""
    return np.mean(np.abs(dz) > 0.15, axis=-1)


@_metric("outlier_rail", "lower")
def outlier_rail(dz: np.ndarray, err: np.ndarray) -> np.ndarray:
    """Fraction with |dz| > max(0.06, 3 sigma_iqr): outliers relative to the sample's own scatter.
    RAIL calls this rate the "catastrophic outlier rate"; zpeft's `catastrophic` is another metric."""
    threshold = np.maximum(0.06, 3.0 * sigma_iqr.rows(dz, err))
    return np.mean(np.abs(dz) > np.expand_dims(threshold, -1), axis=-1)


@_metric("catastrophic", "lower")
def catastrophic(dz: np.ndarray, err: np.ndarray) -> np.ndarray:
    """Fraction with |z_pred - z_ref| > 1.0 (not normalised by 1 + z). Not RAIL's "catastrophic outlier rate",
    which is zpeft's `outlier_rail`."""
    return np.mean(np.abs(err) > 1.0, axis=-1)


@_metric("rmse", "lower")
def rmse(dz: np.ndarray, err: np.ndarray) -> np.ndarray:
    """sqrt(mean(dz^2)): scatter and bias together, outliers weigh heavily."""
    return np.sqrt(np.mean(dz * dz, axis=-1))


@_metric("hsc_loss", "lower")
def hsc_loss(dz: np.ndarray, err: np.ndarray) -> np.ndarray:
    """mean(1 - 1 / (1 + (dz / 0.15)^2)): the HSC photo-z loss, bounded so outliers count at most 1."""
    x = (dz / 0.15) ** 2
    return np.mean(x / (1.0 + x), axis=-1)  # == 1 - 1/(1+x), without cancellation for small dz


# Every metric is better when lower; "abs" ones (signed biases) are compared by |value|.
LOWER_IS_BETTER: dict[str, Direction] = {name: m.direction for name, m in METRICS.items()}


def comparable(name: str, value: float) -> float:
    """The value to minimise when ranking strategies on metric `name` (|value| for "abs" metrics)."""
    try:
        direction = LOWER_IS_BETTER[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(METRICS)}") from None
    return abs(value) if direction == "abs" else value


def _checked(**arrays: np.ndarray | None) -> list[np.ndarray]:
    """1-D float64 copies of the named arrays; raises naming the input that is empty, ragged or non-finite."""
    out, n = [], None
    for what, arr in arrays.items():
        a = np.asarray(arr, dtype=np.float64)
        if a.ndim != 1:
            raise ValueError(f"{what} must be 1-D (one redshift per galaxy), got shape {a.shape}")
        if a.size == 0:
            raise ValueError(f"{what} is empty: metrics need at least one galaxy")
        bad = int(np.count_nonzero(~np.isfinite(a)))
        if bad:
            raise ValueError(f"{what} has {bad} NaN or inf values of {a.size}; drop or fix those galaxies first")
        if n is not None and a.size != n:
            names = list(arrays)
            raise ValueError(f"{what} has {a.size} values but {names[0]} has {n}; they must pair galaxy by galaxy")
        n = a.size
        out.append(a)
    for what, a in zip(arrays, out):
        if what in ("z_ref", "z_true") and np.any(a <= -1.0):
            raise ValueError(f"{what} has values <= -1, where dz = (z_pred - z) / (1 + z) is undefined")
    return out


def _all_rows(dz_: np.ndarray, err: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric of `dz_` (rows of galaxies), sharing the partial results several metrics use."""
    stack = _SHARING.__dict__.setdefault("stack", [])
    stack.append((dz_, {}))
    try:
        return {name: m.rows(dz_, err) for name, m in METRICS.items()}
    finally:
        stack.pop()


def point_metrics(z_pred: np.ndarray, z_ref: np.ndarray) -> dict[str, float]:
    """Every registered metric on the whole sample, plus "n" (the number of galaxies)."""
    z_pred, z_ref = _checked(z_pred=z_pred, z_ref=z_ref)
    values = _all_rows(dz(z_pred, z_ref), z_pred - z_ref)
    return {"n": len(z_ref), **{name: float(v) for name, v in values.items()}}


def _nan_metrics() -> dict[str, float]:
    return {"n": 0, **{name: math.nan for name in METRICS}}


def paper_range_mask(z_ref: np.ndarray) -> np.ndarray:
    """Boolean mask of galaxies with 0.3 < z_ref <= 1.5, the reference paper's range."""
    z_ref = np.asarray(z_ref, dtype=np.float64)
    lo, hi = PAPER_RANGE
    return (z_ref > lo) & (z_ref <= hi)


def bin_masks(z_ref: np.ndarray, edges: Sequence[float]) -> list[tuple[float, float, np.ndarray]]:
    """(lo, hi, mask) per bin; bins are (lo, hi] except the first, which also takes z_ref == edges[0]."""
    edges = [float(e) for e in edges]
    if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"bin edges must be at least two strictly increasing values, got {edges}")
    out = []
    for i, (lo, hi) in enumerate(zip(edges, edges[1:])):
        mask = (z_ref > lo) & (z_ref <= hi)
        if i == 0:
            mask |= z_ref == lo
        out.append((lo, hi, mask))
    return out


def binned_metrics(z_pred: np.ndarray, z_ref: np.ndarray,
                   edges: Sequence[float] = DEFAULT_EDGES) -> list[dict[str, float]]:
    """Metrics per z_ref bin, each dict with "lo", "hi", "n" and every metric.

    Empty bins are kept (n = 0, metrics NaN) so tables line up across runs; galaxies outside
    the edges are left out.
    """
    z_pred, z_ref = _checked(z_pred=z_pred, z_ref=z_ref)
    return [{"lo": lo, "hi": hi, **(point_metrics(z_pred[m], z_ref[m]) if m.any() else _nan_metrics())}
            for lo, hi, m in bin_masks(z_ref, edges)]


def _resampled_rows(z_preds: Sequence[np.ndarray], z_ref: np.ndarray, n_boot: int,
                    seed: int) -> list[dict[str, np.ndarray]]:
    """For each prediction array, every metric on the same `n_boot` bootstrap resamples of galaxies."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    n = len(z_ref)
    chunk = max(1, _MAX_CHUNK_ELEMENTS // n)
    parts: list[list[dict[str, np.ndarray]]] = [[] for _ in z_preds]
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_boot - start), n))
        ref = z_ref[idx]
        for part, z_pred in zip(parts, z_preds):
            pred = z_pred[idx]
            err = pred - ref
            part.append(_all_rows(err / (1.0 + ref), err))
    return [{name: np.concatenate([p[name] for p in part]) for name in METRICS} for part in parts]


def _quantiles(level: float) -> tuple[float, float]:
    if not 0.0 < level < 1.0:
        raise ValueError(f"interval level must be between 0 and 1, got {level}")
    return (1.0 - level) / 2.0, (1.0 + level) / 2.0


def bootstrap_interval(z_pred: np.ndarray, z_ref: np.ndarray, n_boot: int = 1000, seed: int = 0,
                       level: float = 0.68) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval (central `level`) of every metric, resampling galaxies."""
    q = _quantiles(level)
    z_pred, z_ref = _checked(z_pred=z_pred, z_ref=z_ref)
    (rows,) = _resampled_rows([z_pred], z_ref, n_boot, seed)
    out = {}
    for name, values in rows.items():
        lo, hi = np.quantile(values, q)
        out[name] = (float(lo), float(hi))
    return out


def _with_intervals(z_pred: np.ndarray, z_ref: np.ndarray, n_boot: int, seed: int,
                    level: float) -> dict[str, float]:
    """Point metrics plus name_lo / name_hi; NaN metrics with n = 0 when the subset is empty."""
    if len(z_ref) == 0:
        return {**_nan_metrics(), **{f"{k}_{s}": math.nan for k in METRICS for s in ("lo", "hi")}}
    out = point_metrics(z_pred, z_ref)
    for name, (lo, hi) in bootstrap_interval(z_pred, z_ref, n_boot, seed, level).items():
        out[f"{name}_lo"], out[f"{name}_hi"] = lo, hi
    return out


def _evaluate_against(z_pred: np.ndarray, z_ref: np.ndarray, n_boot: int, seed: int, level: float,
                      edges: Sequence[float]) -> dict:
    in_paper = paper_range_mask(z_ref)
    return {
        "all": _with_intervals(z_pred, z_ref, n_boot, seed, level),
        "paper_range": _with_intervals(z_pred[in_paper], z_ref[in_paper], n_boot, seed, level),
        "bins": [{"lo": lo, "hi": hi, **_with_intervals(z_pred[m], z_ref[m], n_boot, seed, level)}
                 for lo, hi, m in bin_masks(z_ref, edges)],
    }


def evaluate(z_pred: np.ndarray, z_ref: np.ndarray, z_true: np.ndarray | None = None, *, n_boot: int,
             seed: int, level: float = 0.68, edges: Sequence[float] = DEFAULT_EDGES) -> dict:
    """Everything a run record stores for one test set, as JSON-ready python types.

    {"label": {"all": {...}, "paper_range": {...}, "bins": [...]}, "true": {...}} where each
    block holds "n", every metric and its bootstrap `level` interval as metric_lo / metric_hi.
    "true" (the same against the true redshift) is present only when `z_true` is given.
    NaN appears only in blocks with n = 0.
    """
    arrays = {"z_pred": z_pred, "z_ref": z_ref} if z_true is None else \
        {"z_pred": z_pred, "z_ref": z_ref, "z_true": z_true}
    checked = _checked(**arrays)
    out = {"label": _evaluate_against(checked[0], checked[1], n_boot, seed, level, edges)}
    if z_true is not None:
        out["true"] = _evaluate_against(checked[0], checked[2], n_boot, seed, level, edges)
    return out


def seed_summary(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) over seeds; std is NaN for a single seed."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"seed_summary needs a non-empty 1-D list of per-seed values, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"seed_summary got non-finite values {v.tolist()}; leave out runs whose subset was empty")
    return float(v.mean()), (float(v.std(ddof=1)) if v.size > 1 else math.nan)
