"""reports/PERFORMANCE.md: measured throughput tables plus a labelled projection of the paper suite's time.

The file keeps one section per device kind (cpu, cuda): a run replaces its own kind's
section and leaves the others, so CPU figures and GPU figures can sit side by side.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from zpeft.markdown import markdown_table

TITLE = "# Performance\n"
_SECTION = re.compile(r"<!-- perf:(\w+) -->\n.*?<!-- /perf:\1 -->\n", re.S)


@dataclass(frozen=True)
class PaperWorkload:
    """What the `paper` suite trains, for the projection; `source` says where the numbers came from."""

    n_photo: int = 115_000
    n_spec: int = 286_000
    train_fraction: float = 0.6  # of each catalogue; val and test take 0.2 each
    val_fraction: float = 0.2
    base_epochs: int = 15  # TrainSettings' default budget, run in full (early stopping only shortens it)
    finetune_epochs: int = 15
    lora_ranks: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    spec_fractions: tuple[float, ...] = (1.0,)  # each spec-z-trained strategy runs once per fraction
    seeds: int = 1
    source: list[str] = field(default_factory=lambda: ["assumed (the paper suite was not found)"])


def paper_workload(suite: str | Path = "paper") -> PaperWorkload:
    """The workload with epochs, seeds, spec-z fractions and LoRA ranks of the paper suite (parsed as any suite)."""
    from zpeft.run.suite import SuiteError, load_suite

    try:
        parsed = load_suite(suite)
    except SuiteError:
        return PaperWorkload()
    lora = [s for s in parsed.strategies if s.name == "lora" and "rank" in s.grid]
    ranks = tuple(lora[0].grid["rank"]) if lora else PaperWorkload.lora_ranks
    return PaperWorkload(base_epochs=parsed.base.epochs, finetune_epochs=parsed.finetune.epochs,
                         lora_ranks=ranks, spec_fractions=parsed.data_fractions, seeds=len(parsed.seeds),
                         source=[f"epochs, seeds, data fractions and LoRA ranks from {Path(parsed.source).name}"])


def project_paper_hours(table: pd.DataFrame, work: PaperWorkload) -> pd.DataFrame:
    """Projected hours of the paper suite per backbone and loop, from measured img/s (a projection, not a run).

    Per seed: a base model on photo-z train; per spec-z fraction head-only, LoRA at every rank,
    full fine-tuning on spec-z train and a combined model from scratch on photo-z + spec-z
    train; every epoch validated, every model scored on the three test sets. LoRA at every
    rank is timed at r=4; bootstrap intervals (CPU work) are not counted.
    """
    tr, va, te = work.train_fraction, work.val_fraction, 1 - work.train_fraction - work.val_fraction
    photo, spec = work.n_photo, work.n_spec
    rows = []
    for (backbone, loop), part in table[table.train_img_s.notna()].groupby(["backbone", "loop"]):
        speed = dict(zip(part.variant, part.train_img_s))
        infer = table[(table.backbone == backbone) & table.infer_img_s.notna()].infer_img_s
        lora = speed.get("lora-r4-fused", speed.get("lora-r4-peft"))
        if "full" not in speed or lora is None or infer.empty:
            continue
        head = speed.get("head-only", speed["full"])
        infer_speed = float(infer.max())
        runs = [(photo * tr, work.base_epochs, speed["full"], photo * va)]  # (images/epoch, epochs, img/s, val)
        for f in work.spec_fractions:
            runs += [(spec * f * tr, work.finetune_epochs, head, spec * f * va),
                     *[(spec * f * tr, work.finetune_epochs, lora, spec * f * va)] * len(work.lora_ranks),
                     (spec * f * tr, work.finetune_epochs, speed["full"], spec * f * va),
                     ((photo + spec * f) * tr, work.base_epochs, speed["full"], (photo + spec * f) * va)]
        train_s = sum(n * e / s for n, e, s, _ in runs)
        val_s = sum(v * e / infer_speed for _, e, _, v in runs)
        models = len(runs) + 1  # every trained model, plus zero-shot
        test_s = models * 2 * (photo + spec) * te / infer_speed  # spec, photo and combined test sets
        rows.append({"backbone": backbone, "loop": loop, "train_hours": work.seeds * train_s / 3600,
                     "eval_hours": work.seeds * (val_s + test_s) / 3600,
                     "total_hours": work.seeds * (train_s + val_s + test_s) / 3600,
                     "head_only_speed": "measured" if "head-only" in speed else "full's (not measured)"})
    return pd.DataFrame(rows)


def render_section(table: pd.DataFrame, projection: pd.DataFrame, work: PaperWorkload, meta: dict) -> str:
    """Markdown for one run: settings, the throughput table, the projection and its assumptions."""
    kind = meta["device_kind"]
    lines = [f"<!-- perf:{kind} -->", f"## {kind.upper()} run: {meta['device']}", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items() if k not in ("device_kind",)]
    if kind == "cpu":
        lines += ["", "**CPU figures.** They test that the harness runs and show relative costs on this CPU; "
                  "they say nothing about GPU speed (launch overhead, which the fast paths remove, is a GPU effect)."]
    lines += ["", "### Measured throughput", "",
              "`x ref full`: training img/s over the reference loop's full fine-tuning on the same backbone; "
              "`x full`: over full fine-tuning in the same loop. Peak memory: " + _memory_note(table), ""]
    shown = table.assign(
        train=table.train_img_s.map(_num), infer=table.infer_img_s.map(_num),
        x_ref=table.x_reference_full.map(_ratio), x_full=table.x_full_same_loop.map(_ratio),
        memory=table.peak_memory_mb.map(_num), error=table.error.fillna(""))
    lines += [markdown_table(shown[["backbone", "variant", "loop", "trainable_params", "train", "x_ref", "x_full",
                               "infer", "memory", "error"]].rename(columns={
        "trainable_params": "trainable", "train": "train img/s", "x_ref": "x ref full", "x_full": "x full",
        "infer": "infer img/s", "memory": "peak MB"}))]
    lines += ["", "### Paper suite: projected time (a projection from the throughput above, not a run)", ""]
    lines += [f"Workload: {work.n_photo:,} photo-z + {work.n_spec:,} spec-z galaxies at the measured image size, "
              f"train/val/test {work.train_fraction:.0%}/{work.val_fraction:.0%}/"
              f"{1 - work.train_fraction - work.val_fraction:.0%}; base and combined {work.base_epochs} epochs, "
              f"fine-tuning {work.finetune_epochs} epochs (no early stop: an upper bound); LoRA ranks "
              f"{list(work.lora_ranks)} all timed at r=4; spec-z fractions {list(work.spec_fractions)}; "
              f"{work.seeds} seed(s); evaluation at the eager predict() speed for every loop. Sources: {'; '.join(work.source)}.", ""]
    if projection.empty:
        lines.append("No projection: it needs full, a LoRA variant and inference measured for a backbone.")
    else:
        lines.append(markdown_table(projection.assign(**{c: projection[c].map(lambda v: f"{v:.2f}")
                                                    for c in ("train_hours", "eval_hours", "total_hours")})))
    lines += [f"<!-- /perf:{kind} -->", ""]
    return "\n".join(lines)


def gpu_placeholder(command: str) -> str:
    return (f"<!-- perf:cuda -->\n## CUDA run\n\nGPU: not yet measured. On a CUDA machine run\n\n"
            f"```\n{command}\n```\n\nwhich replaces this section with the card, command and numbers.\n"
            f"<!-- /perf:cuda -->\n")


def write_report(path: Path, section: str, kind: str, gpu_command: str) -> Path:
    """Replace this device kind's section of `path` (keeping the others); add a GPU placeholder if none."""
    path = Path(path)
    old = path.read_text() if path.is_file() else ""
    sections = {m.group(1): m.group(0) for m in _SECTION.finditer(old)}
    sections[kind] = section
    sections.setdefault("cuda", gpu_placeholder(gpu_command))
    order = sorted(sections, key=lambda k: (k != "cuda", k))
    text = TITLE + "\nWritten by `zpeft perf` (zpeft.perf). Every number is measured in the run its section " \
                   "names, except where labelled a projection.\n\n" + "\n".join(sections[k] for k in order)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def command_line() -> str:
    return "zpeft " + " ".join(sys.argv[1:]) if Path(sys.argv[0]).name in ("zpeft", "cli.py") else " ".join(sys.argv)


def _memory_note(table: pd.DataFrame) -> str:
    kinds = set(table.memory_kind.dropna()) - {""}
    if kinds == {"process_max_rss"}:
        return "process max RSS so far (CPU: cumulative over the run, not per case)."
    return "max allocated device memory per case."


def _num(v) -> str:
    return "" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:,.0f}"


def _ratio(v) -> str:
    return "" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.2f}"


