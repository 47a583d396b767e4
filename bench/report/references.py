"""Non-ML reference rows: template fits and an off-the-shelf BPZ fit (yardsticks a reader can place the CNNs
between), and the test sets' own labels, scored like runs.

- `template-fit (best case)` (`<test set>_template_grizy` in the references file; an older file's `_template`,
  on simulated data the deep label fit, is not read): a template fit to the five catalogue magnitudes. On the
  simulated survey it is a best case twice over: the magnitudes are the true fluxes plus HSC-Wide noise, not
  photometry measured on the cutouts the CNNs see, and its templates and p(z | i) prior are drawn from the
  simulator's own galaxy population.
- `template-fit (on-stamp)` (`_template_onstamp`): the same templates and prior fitted to photometry measured on
  the cutouts themselves (zpeft.yardsticks.onstamp): what the images hold for a template fit.
- `bpz (off-the-shelf)` (`_bpz`) and `bpz (off-the-shelf, on-stamp)` (`_bpz_onstamp`): desc-bpz with the
  templates and prior it ships (zpeft.yardsticks.bpz), a mismatched-template fit, on the catalogue magnitudes and
  on the on-stamp ones.
- `labels`: each test set's label scored against the true z (simulated data), how noisy the labels a strategy
  trains and is scored on are.
They are references, not strategies: they train nothing, and `zpeft compare` never sees them (they go to
references.csv, not results.csv). A references file written before a fit existed is completed from the data
(`complete_references`), so an older results directory gets every row without running the suite again.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pandas as pd

from zpeft.conventions import RANGES, TEST_SETS
from zpeft.metrics import METRICS, evaluate
from zpeft.run.records import TEMPLATE_SUFFIX, YARDSTICKS, read_records, read_references, write_references

TEMPLATE_FIT = "template-fit"  # the best case
TEMPLATE_ONSTAMP = "template-fit-onstamp"
BPZ = "bpz"
BPZ_ONSTAMP = "bpz-onstamp"
LABELS = "labels"
# Fitted reference rows: name -> the suffix of its array in the references file (`<test set>` + suffix).
FITS = {TEMPLATE_FIT: TEMPLATE_SUFFIX, TEMPLATE_ONSTAMP: "_template_onstamp", BPZ: "_bpz", BPZ_ONSTAMP: "_bpz_onstamp"}
ROW_NAMES = {TEMPLATE_FIT: "template-fit (best case)", TEMPLATE_ONSTAMP: "template-fit (on-stamp)",
             BPZ: "bpz (off-the-shelf)", BPZ_ONSTAMP: "bpz (off-the-shelf, on-stamp)",
             LABELS: "labels (reference)"}  # as the main tables, findings and glossary show them
# What each row is, in a sentence (the report's glossary).
DESCRIPTIONS = {
    TEMPLATE_FIT: "A template fit to the five catalogue magnitudes (grizy), no images. On the simulated survey a best "
                  "case: the magnitudes are the true fluxes plus HSC-Wide noise (not photometry measured on the "
                  "cutouts the CNNs see), and the templates and p(z | i) prior come from the simulator's own galaxy "
                  "population. On real data, the pair's named template-fit column.",
    TEMPLATE_ONSTAMP: "The best case's templates, prior and error floor fitted to photometry measured on the very "
                      "cutouts the CNNs see (photutils apertures, one Kron-like circle per galaxy for every band, "
                      "errors from each stamp's sky noise): what a template fit gets from the same pixels.",
    BPZ: "desc-bpz (LSST DESC's BPZ, as RAIL runs it) with the templates and prior it ships (CWW + Kinney "
         "starbursts, the HDFN prior) on the catalogue magnitudes, same errors as the best case: a "
         "mismatched-template, off-the-shelf fit, what the community code gives untuned to this population.",
    BPZ_ONSTAMP: "The same off-the-shelf BPZ fit to the on-stamp magnitudes.",
    LABELS: "The test set's labels scored against the true redshift (simulated data only): how noisy the labels "
            "are; on the photo-z test set, the photo-z labels' own error.",
}
LEVEL = 0.68  # the interval level the run records use (metrics.evaluate's default)
COLUMNS = ["dataset", "name", "test_set", "reference", "range", "n",
           *(f"{m}{s}" for m in METRICS for s in ("", "_lo", "_hi"))]
_WHY_MISSING = {
    TEMPLATE_FIT: "no template-fit photo-z in the references file (the catalogue has none, or the file was written "
                  "before template fits were recorded: running any run of the suite again adds them)",
    TEMPLATE_ONSTAMP: "no on-stamp template fit (made for simulated surveys only, and the data could not be read "
                      "to add it)",
    BPZ: "no BPZ fit (made for simulated surveys only, and the data could not be read to add it)",
    BPZ_ONSTAMP: "no on-stamp BPZ fit (made for simulated surveys only, and the data could not be read to add it)",
    LABELS: "no true redshift (only simulated data know it)",
}


def reference_metrics(references: dict[str, np.ndarray], *, n_boot: int,
                      seed: int = 0) -> tuple[dict[str, dict[str, dict]], list[str]]:
    """name -> test set -> reference -> range block (as a record's `metrics`), and what was not available.

    `references` is a references file's arrays (zpeft.run.records.write_references).
    """
    out: dict[str, dict[str, dict]] = {name: {} for name in [*FITS, LABELS]}
    missing: dict[str, list[str]] = {name: [] for name in out}
    for test_set in [t for t in TEST_SETS if t in references]:
        label, true = references[test_set], references.get(f"{test_set}_true")
        for name, suffix in FITS.items():
            fitted = references.get(test_set + suffix)
            if fitted is None:
                missing[name].append(test_set)
            else:
                out[name][test_set] = evaluate(fitted, label, true, n_boot=n_boot, seed=seed, level=LEVEL)
        if true is None:
            missing[LABELS].append(test_set)
        else:  # against the label the labels are exact by definition: only the true-z reference says anything
            out[LABELS][test_set] = {"true": evaluate(label, true, n_boot=n_boot, seed=seed, level=LEVEL)["label"]}
    notes = [f"{ROW_NAMES[name]} not available for the {', '.join(sets)} test set(s): {_WHY_MISSING[name]}"
             for name, sets in missing.items() if sets]
    return {k: v for k, v in out.items() if v}, notes


def reference_table(results_dir: str | Path, datasets: list[str], *, n_boot: int,
                    seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    """One row per dataset x reference row x test set x reference x range (COLUMNS), and notes per dataset.

    A simulated dataset's references file lacking a yardstick is completed first (`complete_references`).
    """
    rows, notes = [], []
    for dataset in datasets:
        notes += [f"{dataset}: {n}" for n in complete_references(results_dir, dataset)]
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


def complete_references(results_dir: str | Path, dataset: str) -> list[str]:
    """Add the fits a simulated dataset's references file lacks (one written by older code), from the data.

    The dataset is loaded as its records say (name and options), only when its records say it is simulated and
    its file lacks a template fit or a yardstick of some test set; it must fingerprint (meta hash) as the records
    do, and the file keeps its arrays (zpeft.run.records.write_references refuses other labels). Returns why
    fits could not be added (nothing when they were, or none was missing), for the report's notes.
    """
    try:
        references = read_references(results_dir, dataset)
    except FileNotFoundError:
        return []
    wanted = [t + s for t in TEST_SETS if t in references for s in (TEMPLATE_SUFFIX, *(f"_{y}" for y in YARDSTICKS))]
    if all(k in references for k in wanted):
        return []
    record = next((r for r in read_records(results_dir) if r.dataset == dataset and r.status == "ok"), None)
    if record is None or record.dataset_meta.get("source") != "sim" or "dataset" not in record.config:
        return []
    from zpeft.data.registry import load_pair
    from zpeft.run.execute import meta_hash, test_references

    spec = record.config["dataset"]
    options = dict(spec.get("options", {}))
    try:
        pair = _load_streamed(load_pair, spec["name"], options)
    except Exception as err:  # noqa: BLE001 - any failure to read the data leaves the rows out, with the reason
        return [f"its references file lacks fits the report could not add: dataset {spec['name']!r} did not load "
                f"({type(err).__name__}: {err})"]
    if meta_hash(pair) != spec.get("meta_hash"):
        return [f"its references file lacks fits the report did not add: dataset {spec['name']!r} now loads as other "
                "data than its records saw (meta hash differs)"]
    try:
        write_references(results_dir, dataset, test_references(pair.test_sets()))
    except ValueError as err:
        return [f"its references file lacks fits the report could not add: {err}"]
    return []


def _load_streamed(load_pair, name: str, options: dict):
    """`load_pair` with images left in their files where the loader can (a report needs no pixels in memory)."""
    from zpeft.data.registry import DATASETS

    accepts = inspect.signature(DATASETS[name]).parameters if name in DATASETS else {"storage": None}
    extra = {k: v for k, v in (("storage", "stream"), ("progress", False)) if k in accepts and k not in options}
    return load_pair(name, **options, **extra)
