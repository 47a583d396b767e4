"""Names and rules shared by every room: test sets, table metrics, file-safe labels, device names, workers.

Kept in one torch-free module so the runner, the reports and the CLI cannot drift apart.
"""

from __future__ import annotations

import re

SPLITS = ("train", "val", "test")
KINDS = ("photo", "spec")  # the two labelled sets of a dataset pair
TEST_SETS = ("spec", "photo", "combined")  # every model is scored on each of these test sets
REFERENCES = ("label", "true")  # what z_ref is: the test set's label, or (simulated data) the true z
RANGES = ("all", "paper_range")  # the whole test set, and 0.3 < z_ref <= 1.5 (the reference paper's range)
STOPPING_RULE, EPOCH_CAP = "stopping rule", "epoch cap"  # a record's `ended_by`: converged, or cut by the safety cap
TABLE_METRICS = ("bias", "sigma_nmad", "outlier_015")  # the metrics headline tables and comparisons show
BASELINE_STRATEGY = "head-only"  # traditional transfer learning: what every strategy is compared with
DEFAULT_WORKERS = 2  # processes of `--executor process` (the project's machines have 2 cores)

LABEL_CHARS = "letters, digits and . _ + = - (not starting with .)"
_NOT_LABEL = re.compile(r"[^A-Za-z0-9._+=-]+")
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def is_label(text: str) -> bool:
    """True when `text` is non-empty, uses only LABEL_CHARS and does not start with '.' (no hidden files, no '..').

    Labels go into file and directory names as they are, so this is what keeps outputs inside their directory.
    """
    return bool(text) and not _NOT_LABEL.search(text) and not text.startswith(".")


def to_label(text: str) -> str:
    """`text` made a label: every run of other characters replaced by '-', leading dots too (run ids, names)."""
    label = _NOT_LABEL.sub("-", text)
    return "-" + label.lstrip(".") if label.startswith(".") else label


def slug(text: str) -> str:
    """`text` with everything but letters, digits, '-' and '_' replaced by '_' (plot and reference file names)."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def check_device_name(name: str) -> str:
    """`name` if it is auto, cpu, cuda or cuda:N, else ValueError saying what is allowed (imports no torch)."""
    if not isinstance(name, str) or not _DEVICE.fullmatch(name):
        raise ValueError(f"device {name!r} is not a device; use auto, cpu, cuda or cuda:N")
    return name
