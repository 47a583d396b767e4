"""Default tolerances of `zpeft compare`: per metric, absolute, and the columns that must match exactly."""

from __future__ import annotations

from zpeft.metrics import METRICS

# Absolute tolerances: about the test-set sampling error of a few-thousand-galaxy spec-z test set. A metric
# registered later without an entry here is still checked, at 0.01.
DEFAULT_TOLERANCES: dict[str, float] = {
    **dict.fromkeys(METRICS, 0.01),
    "bias": 0.005, "bias_mean": 0.005, "sigma_nmad": 0.005, "sigma_iqr": 0.005, "outlier_015": 0.01,
    "outlier_rail": 0.01, "catastrophic": 0.01, "rmse": 0.01, "hsc_loss": 0.01, "trainable_params": 0.0, "n": 0.0,
}
EXACT = ("trainable_params", "n")  # the model's size and the test-set size must not change silently
