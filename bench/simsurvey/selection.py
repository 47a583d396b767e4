"""Which galaxies enter which set: the spectroscopic success probability and the train/val/test split."""

from __future__ import annotations

import numpy as np

from zpeft.simsurvey.presets import SpecSelection


def spec_probability(i_mag: np.ndarray, g_minus_z: np.ndarray, sel: SpecSelection) -> np.ndarray:
    """Spectroscopic success probability: a soft bright limit in i times a penalty on red g - z."""
    bright = 1.0 / (1.0 + np.exp((i_mag - sel.i_half) / sel.i_width))
    blue = sel.red_floor + (1.0 - sel.red_floor) / (1.0 + np.exp((g_minus_z - sel.red_gz) / sel.red_width))
    return sel.p_max * bright * blue


def assign_splits(n: int, fractions: tuple[float, float, float], rng: np.random.Generator) -> np.ndarray:
    """Split index (0 train, 1 val, 2 test) per galaxy; drawn per galaxy, so a galaxy in both the
    photo-z and the spec-z set sits in the same split of each (no test galaxy is trained on)."""
    return np.searchsorted(np.cumsum(fractions)[:-1], rng.random(n), side="right").astype(np.int8)

