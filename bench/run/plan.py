"""A suite expanded into runs, each with the config that determines its result and that config's hash.

Expansion: dataset x backbone x seed x strategy x parameter grid x data fraction. Strategies
that do not train (`zero-shot`) are independent of the data fraction: they run once and are
recorded at fraction 1.0. For strategies that train on the combined set, a fraction thins
only its spec-z part (the photo-z part stays whole), so every strategy sees the same spec-z
galaxies at a given fraction and seed.

Training settings are resolved here and nowhere else. Every strategy that starts from the base
model trains with `[training.finetune]` (one epoch budget and early-stopping rule for all),
every strategy that starts from scratch with `[training.base]` (it replaces the base model).
The learning rate is the strategy entry's `lr` (its rate for the run's data fraction when it
gives one per fraction), else that section's `lr`, else the strategy's class default; the base
model's is `[training.base] lr`, else BASE_LR. Equal budgets do not make equal tuning: class
defaults are not chosen on validation data, `zpeft tune` rates are, per data fraction. The
resolved settings go into the config and the record; where the rate came from (`lr_source`,
`tuned` only for a rate tuned for the run's own fraction) goes into the record only, since it
does not change the result.

A backbone with pretrained weights (zpeft.run.pretrained) adds their SHA-256 and the preprocessing
that goes with them to every run's config; its base model is those weights and nothing else (no
photo-z training), so its identity is the backbone name and the weights' hash.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from zpeft.conventions import to_label
from zpeft.run.pretrained import BackboneSpec
from zpeft.run.records import config_hash
from zpeft.run.suite import DatasetSpec, StrategySpec, Suite
from zpeft.strategies import Strategy
from zpeft.training.settings import TrainSettings

BASE_LR = 2e-3  # the base model's learning rate when the suite sets none (feasibility trial; not tuned)
# Where a run's learning rate came from: chosen by `zpeft tune` on validation, set in the suite file by hand
# (strategy entry or [training] section), the strategy's protocol (paper-tl's 1e-8), or its class default.
LR_SOURCES = ("tuned", "suite", "protocol", "default")


@dataclass(frozen=True)
class Run:
    """One run of a suite: a strategy applied on one dataset, backbone, seed and data fraction."""

    dataset: DatasetSpec
    backbone: str
    strategy: Strategy
    label: str
    seed: int
    data_fraction: float
    crop: int | None
    train: TrainSettings | None  # the strategy's own training, lr resolved; None when it does not train
    lr_source: str  # where train.lr came from (LR_SOURCES); "" when it does not train
    lr_grid: tuple[float, ...]  # the grid a tuned rate was chosen on; () otherwise
    base: TrainSettings | None  # the base model's training, lr resolved; None when it starts from scratch
    n_boot: int
    base_lr_source: str = ""  # where base.lr came from (LR_SOURCES); "" when it starts from scratch
    pretrained: BackboneSpec | None = None  # the backbone's own weights and preprocessing, when the suite gives them

    @property
    def needs_base(self) -> bool:
        return self.base is not None


@dataclass(frozen=True)
class PlannedRun:
    """A run with its identity: the config that determines its result, its hash and a readable, unique id."""

    run: Run
    config: dict
    config_hash: str
    run_id: str
    base_config: dict | None
    base_hash: str | None  # identity of the base model it starts from (shared across strategies)


def expand(suite: Suite) -> list[Run]:
    """Every run of the suite, grouped by (dataset, backbone, seed) so a base model's users are adjacent."""
    base = suite.base.with_lr(BASE_LR)
    base_source = ("tuned" if suite.base_lr_grid else "suite") if suite.base.lr is not None else "default"
    runs = []
    for dataset in suite.datasets:
        for backbone in suite.backbones:
            for seed in suite.seeds:
                for spec in suite.strategies:
                    for strategy, label in spec.expand():
                        trains = strategy.trains_on != "none"
                        for fraction in spec.fractions(suite.data_fractions) if trains else (1.0,):
                            runs.append(Run(
                                dataset=dataset, backbone=backbone.name, strategy=strategy, label=label, seed=seed,
                                data_fraction=fraction, crop=suite.crop,
                                train=resolve_settings(spec, strategy, suite, fraction) if trains else None,
                                lr_source=lr_source(spec, strategy, suite, fraction) if trains else "",
                                lr_grid=spec.lr_grid if trains and spec.tuned_for(fraction) else (),
                                base=base if strategy.starts_from == "base" else None, n_boot=suite.n_boot,
                                base_lr_source=base_source if strategy.starts_from == "base"
                                and not backbone.pretrained else "",
                                pretrained=backbone if backbone.pretrained else None))
    return runs


def resolve_settings(spec: StrategySpec, strategy: Strategy, suite: Suite, fraction: float) -> TrainSettings:
    """The training settings a strategy runs with at a data fraction: its section's budget and its rate."""
    section = suite.base if strategy.starts_from == "scratch" else suite.finetune
    own = spec.rate(fraction)
    lr = own if own is not None else section.lr if section.lr is not None else strategy.default_lr
    return replace(section, lr=lr)


def lr_source(spec: StrategySpec, strategy: Strategy, suite: Suite, fraction: float) -> str:
    """Where `resolve_settings`'s rate comes from at `fraction`, one of LR_SOURCES."""
    section = suite.base if strategy.starts_from == "scratch" else suite.finetune
    if spec.rate(fraction) is not None:
        return "tuned" if spec.tuned_for(fraction) else "suite"
    if section.lr is not None:
        return "suite"
    return "protocol" if strategy.rate_is_protocol else "default"


# Loader options that change where the data are held, not what they are (streamed images give the same numbers).
_PLACEMENT_OPTIONS = ("storage",)


def dataset_config(spec: DatasetSpec, meta_hash: str) -> dict:
    """What identifies the data: how it is loaded and a hash of what the loader says it is (its meta)."""
    options = {k: v for k, v in sorted(spec.options.items()) if k not in _PLACEMENT_OPTIONS}
    return {"name": spec.name, "options": options, "meta_hash": meta_hash}


def plan_run(run: Run, meta_hash: str) -> PlannedRun:
    """Attach the config, its hash and the run id; `meta_hash` fingerprints the loaded dataset's meta."""
    data = dataset_config(run.dataset, meta_hash)
    base_config = None if run.base is None else {
        "dataset": data, "backbone": run.backbone, "seed": run.seed, "crop": run.crop, "settings": asdict(run.base)}
    if run.pretrained is not None and base_config is not None:
        base_config = {"backbone": run.backbone, "weights_sha256": run.pretrained.weights_sha256}
    config = {
        "dataset": data,
        "backbone": run.backbone,
        "seed": run.seed,
        "crop": run.crop,
        "strategy": {"name": run.strategy.name, "params": run.strategy.params()},
        "data_fraction": run.data_fraction if run.train is not None else None,
        "base": base_config,
        "train": None if run.train is None else asdict(run.train),
        "n_boot": run.n_boot,
        "labels": {"dataset": run.dataset.label, "strategy": run.label},
    }
    if run.pretrained is not None:
        config["pretrained"] = run.pretrained.identity()
    digest = config_hash(config)
    run_id = "__".join([run.dataset.label, run.backbone, run.label, f"f{run.data_fraction:g}", f"s{run.seed}",
                        digest[:8]])
    return PlannedRun(run, config, digest, to_label(run_id), base_config,
                      None if base_config is None else config_hash(base_config))
