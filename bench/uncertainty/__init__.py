"""Calibrated error bars for any run: split-conformal intervals and p(z) (conformal), scored as RAIL scores them
(scores)."""

from zpeft.uncertainty.conformal import LEVELS, PZ_LEVELS, Calibration
from zpeft.uncertainty.scores import score

__all__ = ["LEVELS", "PZ_LEVELS", "Calibration", "score"]
