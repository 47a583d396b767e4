"""Non-ML reference rows: the catalogue's template-fit photo-z and the test sets' own labels, scored like runs.

`template-fit` is the photo-z a template fit to the five catalogue magnitudes gives (`<test set>_template_grizy`
in the references file; an older file's `_template`, on simulated data the deep label fit, is not read), scored against the label and the true z; `labels` is each test set's label scored
against the true z (simulated data), which shows how noisy the labels a strategy trains and is scored on are.
They are references, not strategies: they train nothing, and `zpeft compare` never sees them (they go to
references.csv, not results.csv).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from zpeft.conventions import RANGES, TEST_SETS
from zpeft.metrics import METRICS, evaluate
from zpeft.run.records import TEMPLATE_SUFFIX, read_references

TEMPLATE_FIT = "template-fit"
LABELS = "labels"
ROW_NAMES = {TEMPLATE_FIT: "template-fit (reference)", LABELS: "labels (reference)"}  # as the main tables show them
LEVEL = 0.68  # the interval level the run records use (metrics.evaluate's default)
COLUMNS = ["dataset", "name", "test_set", "reference", "range", "n",
           *(f"{m}{s}" for m in METRICS for s in ("", "_lo", "_hi"))]


def reference_metrics(references: dict[str, np.ndarray], *, n_boot: int,
                      seed: int = 0) -> tuple[dict[str, dict[str, dict]], list[str]]:
    """name -> test set -> reference -> range block (as a record's `metrics`), and what was not available.

    `references` is a references file's arrays (zpeft.run.records.write_references).
    """
    out: dict[str, dict[str, dict]] = {TEMPLATE_FIT: {}, LABELS: {}}
    missing: dict[str, list[str]] = {TEMPLATE_FIT: [], LABELS: []}
    for test_set in [t for t in TEST_SETS if t in references]:
        label, true = references[test_set], references.get(f"{test_set}_true")
        template = references.get(test_set + TEMPLATE_SUFFIX)
        if template is None:
            missing[TEMPLATE_FIT].append(test_set)
        else:
            out[TEMPLATE_FIT][test_set] = evaluate(template, label, true, n_boot=n_boot, seed=seed, level=LEVEL)
        if true is None:
            missing[LABELS].append(test_set)
        else:  # against the label the labels are exact by definition: only the true-z reference says anything
            out[LABELS][test_set] = {"true": evaluate(label, true, n_boot=n_boot, seed=seed, level=LEVEL)["label"]}
    why = {TEMPLATE_FIT: "no template-fit photo-z in the references file (the catalogue has none, or the file "
                         "was written before template fits were recorded: running any run of the suite again "
                         "adds them)",
           LABELS: "no true redshift (only simulated data know it)"}
    notes = [f"{name} reference not available for the {', '.join(sets)} test set(s): {why[name]}"
             for name, sets in missing.items() if sets]
    return {k: v for k, v in out.items() if v}, notes


def reference_table(results_dir: str | Path, datasets: list[str], *, n_boot: int,
                    seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    """One row per dataset x reference row x test set x reference x range (COLUMNS), and notes per dataset."""
    rows, notes = [], []
    for dataset in datasets:
        try:
            references = read_references(results_dir, dataset)
        except FileNotFoundError:
            notes.append(f"{dataset}: no test-set references file, so no reference rows")
            continue
        metrics, missing = reference_metrics(references, n_boot=n_boot, seed=seed)
        notes += [f"{dataset}: {m}" for m in missing]
        for name, by_test_set in metrics.items():
            for test_set, by_reference in by_test_set.items():
                for reference, block in by_reference.items():
                    rows += [{"dataset": dataset, "name": name, "test_set": test_set, "reference": reference,
                              "range": range_, **block[range_]} for range_ in RANGES]
    return pd.DataFrame(rows, columns=COLUMNS), notes
