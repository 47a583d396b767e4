"""The report's one bootstrap: seeds and test galaxies resampled together, with p-values and intervals that agree.

Why both at once: a strategy's score varies with the test galaxies drawn (test-set sampling) and with the
training seed (initialisation, batch order, data subset). Averaging per-seed differences over a fixed set of
seeds holds only the first; a claim about "the strategy" must hold both. Each replicate therefore draws the
galaxies with replacement once (shared by every variant and seed, so two strategies are compared on the same
galaxies) and, independently, the seeds with replacement (the same seed draw for both strategies of a pair, so
seed s of A stays paired with seed s of B). A replicate's value of a variant is the mean over its drawn seeds
of the metric on the drawn galaxies. This is the two-stage bootstrap for hierarchical data (Davison & Hinkley
1997, Bootstrap Methods and their Application, ch. 3); with k seeds its seed stage has (k - 1) / k of the
between-seed variance, a small understatement we accept and state rather than inflate by hand.

p and interval are read from the same ordered replicates, so that p <= a exactly when the central 1 - a
percentile interval excludes zero (`bootstrap_p`, `percentile_interval`): no p below 1 / (B + 1) is ever given.
"""

from __future__ import annotations

import math

import numpy as np

from zpeft.metrics import METRICS

_MAX_CHUNK_ELEMENTS = 1 << 22  # resampled galaxies per chunk: keeps temporaries to tens of MB at any test-set size


def fold(metric: str, values: np.ndarray) -> np.ndarray:
    """Values as compared: |value| for metrics better near zero (biases), the value otherwise."""
    return np.abs(values) if METRICS[metric].direction == "abs" else values


def galaxy_resamples(preds: dict, z_ref: np.ndarray, metrics: tuple[str, ...], n_boot: int,
                     seed: int) -> dict:
    """Per key of `preds` (e.g. (variant, seed)): each metric on the same `n_boot` galaxy resamples, shape (B,)."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    n = len(z_ref)
    chunk = max(1, _MAX_CHUNK_ELEMENTS // max(n, 1))
    parts: dict = {k: {m: [] for m in metrics} for k in preds}
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_boot - start), n))
        ref = z_ref[idx]
        for key, pred in preds.items():
            err = pred[idx] - ref
            dz = err / (1.0 + ref)
            for m in metrics:
                parts[key][m].append(METRICS[m].rows(dz, err))
    return {k: {m: np.concatenate(v) for m, v in by_metric.items()} for k, by_metric in parts.items()}


def seed_draws(n_boot: int, max_seeds: int, seed: int) -> np.ndarray:
    """Uniform numbers (B, max_seeds) from which any pair's seed draw is made (`draw_seeds`): one matrix per block,
    so every comparison of a block uses the same seed draw for the same number of seeds."""
    return np.random.default_rng(seed + 7919).random((n_boot, max(max_seeds, 1)))


def draw_seeds(uniform: np.ndarray, k: int) -> np.ndarray:
    """Indices into a list of k seeds, k per replicate, with replacement: shape (B, k)."""
    return np.minimum((uniform[:, :k] * k).astype(int), k - 1)


def seed_averaged(per_seed: np.ndarray, drawn: np.ndarray) -> np.ndarray:
    """Per replicate, the mean over its drawn seeds: `per_seed` (k, B) values, `drawn` (B, k) seed indices."""
    b = np.arange(per_seed.shape[1])[:, None]
    return per_seed[drawn, b].mean(axis=1)


def bootstrap_p(draws: np.ndarray) -> float:
    """Two-sided bootstrap p of a zero difference: 2 (c + 1) / (B + 1), c the replicates on the far side of zero
    (those <= 0 or those >= 0, whichever are fewer), capped at 1. Never below 2 / (B + 1)."""
    draws = np.asarray(draws, dtype=np.float64)
    c = _far_side(draws)
    return float(min(1.0, 2.0 * (c + 1) / (draws.size + 1)))


def _far_side(draws: np.ndarray) -> int:
    return int(min(np.count_nonzero(draws <= 0), np.count_nonzero(draws >= 0)))


def rank_of_level(n_boot: int, alpha: float) -> int:
    """k = floor((B + 1) alpha / 2): the order statistic a central 1 - alpha interval starts at (0: unresolvable)."""
    return int(math.floor((n_boot + 1) * alpha / 2.0 + 1e-9))


def percentile_interval(draws: np.ndarray, alpha: float) -> tuple[float, float]:
    """The central 1 - alpha interval [d_(k), d_(B+1-k)], k = rank_of_level(B, alpha); (-inf, inf) when B is too
    small to resolve alpha (k < 1). It excludes zero exactly when bootstrap_p(draws) <= alpha."""
    ordered = np.sort(np.asarray(draws, dtype=np.float64))
    k = rank_of_level(ordered.size, alpha)
    if k < 1:
        return -math.inf, math.inf
    return float(ordered[k - 1]), float(ordered[ordered.size - k])


def excludes_zero_at(draws: np.ndarray, alpha: float) -> bool:
    """Whether the 1 - alpha interval excludes zero, in integers (c + 1 <= k), free of rounding."""
    k = rank_of_level(np.asarray(draws).size, alpha)
    return k >= 1 and _far_side(np.asarray(draws, dtype=np.float64)) + 1 <= k


def min_resamples(m: int, alpha: float) -> int:
    """The fewest resamples for which a family of m can reach Holm's smallest level alpha / m (k >= 1), rounded up
    to a multiple of 500."""
    need = math.ceil(2.0 * m / alpha)
    return int(math.ceil(need / 500.0) * 500)


def holm_stepdown(draws: list[np.ndarray], alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down over a family: (significant, alpha_i) per member, in input order.

    Members are taken in order of p; the r-th (0-based) is tested at alpha / (m - r) until the first that
    fails; that one and every later one keep the failing step's level. Significance is decided with
    `excludes_zero_at`, so the interval printed at alpha_i excludes zero exactly when the member is significant
    (for the failed ones: their p is at least the failing p, so their interval at that level holds zero).
    """
    m = len(draws)
    p = np.array([bootstrap_p(d) for d in draws]) if m else np.array([])
    order = np.argsort(p, kind="stable")
    significant = np.zeros(m, dtype=bool)
    levels = np.zeros(m)
    failed_level = None
    for r, i in enumerate(order):
        step = alpha / (m - r)
        if failed_level is None and excludes_zero_at(draws[i], step):
            significant[i], levels[i] = True, step
        else:
            failed_level = step if failed_level is None else failed_level
            levels[i] = failed_level
    return significant, levels


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


def detectable(sd: float, alpha: float, power: float = 0.8) -> float:
    """The smallest true difference a two-sided test at level alpha finds with probability `power`, for a
    difference whose bootstrap standard deviation is `sd` (normal approximation): (z_{1-alpha/2} + z_power) sd."""
    from scipy.stats import norm

    return float((norm.ppf(1.0 - alpha / 2.0) + norm.ppf(power)) * sd)
