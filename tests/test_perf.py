"""`zpeft perf` runs on CPU, writes its table beside the reference loop, and projects the paper suite."""

from __future__ import annotations

import pandas as pd
import pytest

from zpeft.cli import main
from zpeft.perf.document import PaperWorkload, paper_workload, project_paper_hours, write_report


def test_perf_command_writes_table_with_reference_loop(tmp_path):
    out = tmp_path / "PERFORMANCE.md"
    csv = tmp_path / "perf.csv"
    code = main(["perf", "--device", "cpu", "--backbones", "cnn-small", "--batch-size", "8", "--steps", "2",
                 "--warmup", "1", "--img-size", "16", "--ref-workers", "0", "--out", str(out), "--csv", str(csv)])
    assert code == 0
    table = pd.read_csv(csv)
    assert table.error.isna().all()
    assert set(zip(table.variant, table.loop)) == {
        ("full", "reference"), ("lora-r4-peft", "reference"), ("full", "eager"), ("lora-r4-peft", "eager"),
        ("lora-r4-fused", "eager"), ("head-only", "eager")}  # no cuda_graph rows without CUDA
    assert (table.train_img_s > 0).all()
    assert (table[table.loop == "eager"].infer_img_s > 0).all()
    lora = table[table.variant.str.startswith("lora")]
    assert lora.trainable_params.nunique() == 1  # fused and peft LoRA train the same parameters
    text = out.read_text()
    assert "## CPU run" in text and "**CPU figures.**" in text and "GPU: not yet measured" in text
    assert "| cnn-small | lora-r4-fused | eager |" in text
    assert "projection" in text and "| cnn-small | reference |" in text


def test_perf_accuracy_check_compares_plain_and_fast_paths(tmp_path):
    out = tmp_path / "PERFORMANCE.md"
    code = main(["perf", "--device", "cpu", "--backbones", "cnn-small", "--strategies", "full", "--loops", "eager",
                 "--batch-size", "32", "--steps", "1", "--warmup", "1", "--img-size", "16", "--out", str(out),
                 "--accuracy", "--accuracy-backbone", "cnn-small", "--seeds", "2", "--accuracy-epochs", "1"])
    assert code == 0
    text = out.read_text()
    assert "## CPU accuracy check" in text
    for strategy in ("full", "lora-r4"):
        for metric in ("sigma_nmad", "outlier_015", "bias"):
            assert f"| {strategy} | {metric} |" in text


def test_projection_adds_up_the_paper_runs():
    table = pd.DataFrame([
        {"backbone": "b", "variant": v, "loop": "eager", "train_img_s": 1000.0, "infer_img_s": inf}
        for v, inf in (("full", 1e12), ("lora-r4-fused", None), ("head-only", None))])
    work = PaperWorkload(n_photo=100_000, n_spec=200_000, train_fraction=0.5, val_fraction=0.25, base_epochs=10,
                         finetune_epochs=5, lora_ranks=(4, 8), seeds=2)
    got = project_paper_hours(table, work).iloc[0]
    # base 50k x 10 + head 100k x 5 + 2 LoRA 100k x 5 + full 100k x 5 + combined 150k x 10, at 1000 img/s
    expected_seconds = (500_000 + 500_000 + 1_000_000 + 500_000 + 1_500_000) / 1000
    assert got.train_hours == pytest.approx(2 * expected_seconds / 3600)
    assert got.eval_hours == pytest.approx(0, abs=1e-6)


def test_projection_counts_each_spec_fraction():
    table = pd.DataFrame([{"backbone": "b", "variant": v, "loop": "eager", "train_img_s": 1000.0,
                           "infer_img_s": 1e12 if v == "full" else None} for v in ("full", "lora-r4-fused")])
    one = project_paper_hours(table, PaperWorkload(spec_fractions=(1.0,))).train_hours.iloc[0]
    two = project_paper_hours(table, PaperWorkload(spec_fractions=(0.5, 1.0))).train_hours.iloc[0]
    # the 0.5 fraction adds head-only, 6 LoRA ranks and full on half the spec-z train set, and a combined model
    extra_images = 286_000 * 0.5 * 0.6 * 15 * 8 + (115_000 + 286_000 * 0.5) * 0.6 * 15
    assert two - one == pytest.approx(extra_images / 1000 / 3600)


def test_paper_workload_reads_the_suite(tmp_path):
    suite = tmp_path / "paper.toml"
    suite.write_text('datasets = ["toy"]\nbackbones = ["cnn-small"]\nseeds = [0, 1]\ndata_fractions = [0.1, 1.0]\n'
                     '[[strategies]]\nname = "lora"\ngrid = { rank = [2, 8] }\n'
                     '[training.base]\nepochs = 7\n[training.finetune]\nepochs = 3\n')
    work = paper_workload(suite)
    assert (work.seeds, work.spec_fractions, work.lora_ranks, work.base_epochs, work.finetune_epochs) == (
        2, (0.1, 1.0), (2, 8), 7, 3)
    assert paper_workload(tmp_path / "missing.toml") == PaperWorkload()


def test_report_keeps_other_device_sections(tmp_path):
    path = tmp_path / "PERFORMANCE.md"
    write_report(path, "<!-- perf:cpu -->\ncpu one\n<!-- /perf:cpu -->\n", "cpu", "zpeft perf --device cuda")
    write_report(path, "<!-- perf:cuda -->\ngpu numbers\n<!-- /perf:cuda -->\n", "cuda", "unused")
    write_report(path, "<!-- perf:cpu -->\ncpu two\n<!-- /perf:cpu -->\n", "cpu", "unused")
    text = path.read_text()
    assert "gpu numbers" in text and "cpu two" in text
    assert "cpu one" not in text and "not yet measured" not in text


def test_memory_benchmark_measures_each_size_in_its_own_process_and_fits_the_growth(tmp_path):
    out = tmp_path / "PERFORMANCE.md"
    code = main(["perf", "--memory", "--memory-sizes", "200,400", "--memory-storages", "memory,stream",
                 "--img-size", "16", "--memory-dir", str(tmp_path / "pairs"), "--out", str(out)])
    assert code == 0
    assert (tmp_path / "pairs" / "synthetic-400-16" / "manifest.json").is_file()
    text = out.read_text()
    section = text[text.index("## Host memory"):text.index("<!-- /perf:host_memory -->")]
    rows = [line for line in section.splitlines() if line.startswith("| 200 |") or line.startswith("| 400 |")]
    assert len(rows) == 4  # two sizes x two storages
    assert {row.split("|")[3].strip() for row in rows} == {"memory", "stream"}  # the storage each probe used
    assert "- memory: peak = " in section and "- stream: peak = " in section
    assert "GPU: not yet measured" in text  # the other sections are kept
    assert "![peak memory against galaxies](host_memory.png)" in section
    assert (tmp_path / "host_memory.png").stat().st_size > 10_000


def test_memory_fit_recovers_a_linear_growth():
    from zpeft.perf.memory import MemoryRow, growth

    rows = [MemoryRow(n, "auto", "memory", image_gib=0.04 * n / 1e4, prepare_s=1, epoch_s=1,
                      peak_gib=0.5 + 0.41 * n / 1e5, baseline_gib=0.5) for n in (10_000, 50_000, 100_000)]
    (intercept, slope), = growth(rows).values()
    assert intercept == pytest.approx(0.5) and slope == pytest.approx(0.41)
