"""Suites: TOML files naming datasets, backbones, strategy grids, seeds and budgets, validated into frozen dataclasses.

`load_suite("quick")` reads the built-in `zpeft/suites/quick.toml`;
`load_suite("my/suite.toml")` reads a file. A suite looks like::

    name = "quick"                          # default: the file name
    description = "..."                     # optional
    datasets = ["sim-quick", {name = "sim-quick", options = {label_model = "mismatch"}, label = "sim-mismatch"}]
    backbones = ["cnn-small"]               # names, or tables with the user's own pretrained weights:
                                            # {name = "resnet18-mlp", weights = "my.safetensors",
                                            #  preprocessing = "preprocessing.json"}  (zpeft.run.pretrained)
    seeds = [0]                             # default [0]
    data_fractions = [0.25, 1.0]            # share of the spec-z train set used (default [1.0])
    crop = 32                               # centre crop in pixels, or "none" (default)
    device = "auto"                         # default device; the command line overrides it

    [[strategies]]
    name = "lora"
    grid = {rank = [2, 4, 8]}               # each value a list (a grid axis) or a scalar (fixed)
    lr = 2e-3                               # optional; else the [training] section's, else the strategy's default
    lr_grid = [1e-4, 1e-3, 1e-2]            # optional, written by `zpeft tune`: the grid lr was chosen on
    tag = "slow"                            # optional suffix of the display label: lora-r2-slow

    [training.base]                         # TrainSettings fields: the base model (and `combined`, which replaces it)
    epochs = 10
    [training.finetune]                     # the same fields: every strategy that starts from the base model
    epochs = 15
    [evaluation]
    n_boot = 200                            # bootstrap resamples for metric intervals

Paths (datasets, weights, preprocessing) are relative to the suite file. Every error names the
suite file, the entry and what is allowed.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from zpeft import backbones, strategies
from zpeft.conventions import LABEL_CHARS, check_device_name, is_label, to_label
from zpeft.run.pretrained import BackboneSpec, WeightsError, backbone_spec
from zpeft.strategies import Strategy
from zpeft.tomlread import TOMLDecodeError
from zpeft.tomlread import loads as toml_loads
from zpeft.training.settings import TrainSettings

SUITES_DIR = Path(__file__).resolve().parent.parent / "suites"
SUITE_KEYS = ("name", "description", "datasets", "backbones", "strategies", "seeds", "data_fractions", "crop",
              "training", "evaluation", "device")
DATASET_KEYS = ("name", "options", "label")
BACKBONE_KEYS = ("name", "weights", "preprocessing")
STRATEGY_KEYS = ("name", "grid", "lr", "lr_grid", "tag")
TRAINING_KEYS = ("base", "finetune")
EVALUATION_KEYS = ("n_boot",)
_SCALARS = (str, int, float, bool)


class SuiteError(ValueError):
    """A suite file that cannot be run as written; the message names the file, the entry and the fix."""


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset pair by registry name or path, with its loader options; `label` names it in records."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", _default_dataset_label(self.name))

    def key(self) -> tuple:
        """Identity for in-process caches (what `load_pair` is called with)."""
        return (self.name, tuple(sorted(self.options.items())))


@dataclass(frozen=True)
class StrategySpec:
    """One `[[strategies]]` entry: a registered strategy, its parameter grid and an optional learning rate."""

    name: str
    grid: dict[str, tuple] = field(default_factory=dict)  # parameter -> values; one run per combination
    lr: float | None = None
    tag: str | None = None
    lr_grid: tuple[float, ...] = ()  # the grid `zpeft tune` chose `lr` from; empty when the rate was set by hand

    def expand(self) -> list[tuple[Strategy, str]]:
        """One validated Strategy per grid combination, in grid order, with its display label.

        The label is the strategy's own (`lora-r4`), plus `-key<value>` for each grid axis the
        strategy's label does not show (`lora-r4-alpha8`), plus the tag.
        """
        keys = list(self.grid)
        combos = [dict(zip(keys, values)) for values in itertools.product(*(self.grid[k] for k in keys))]
        first = combos[0]  # product() of no axes is one empty combination
        hidden = [k for k in keys if len(self.grid[k]) > 1 and len(
            {strategies.create(self.name, **{**first, k: v}).label() for v in self.grid[k]}) < len(self.grid[k])]
        out = []
        for params in combos:
            strategy = strategies.create(self.name, **params)
            label = strategy.label() + "".join(f"-{k}{params[k]}" for k in hidden)
            out.append((strategy, label + (f"-{self.tag}" if self.tag else "")))
        return out


def _help(text: str, **kw) -> Any:
    return field(metadata={"help": text}, **kw)


@dataclass(frozen=True)
class Suite:
    """A validated suite: what to run (datasets x backbones x seeds x strategies x grid x fractions) and how."""

    name: str = _help("suite name: the default results directory is results/<name>")
    datasets: tuple[DatasetSpec, ...] = _help("dataset pairs by registry name or path, each with a unique label")
    backbones: tuple[BackboneSpec, ...] = _help("backbones by name (zpeft list backbones, or timm/<model>), "
                                                "each optionally with pretrained weights and their preprocessing")
    strategies: tuple[StrategySpec, ...] = _help("strategy entries, each with a parameter grid")
    seeds: tuple[int, ...] = _help("seeds; each gets its own base model", default=(0,))
    data_fractions: tuple[float, ...] = _help("shares of the spec-z train set used, 0 < f <= 1", default=(1.0,))
    crop: int | None = _help("centre crop in pixels, or None for the whole cutout", default=None)
    base: TrainSettings = _help("training of the base model and of strategies from scratch",
                                default_factory=lambda: TrainSettings(epochs=10))
    finetune: TrainSettings = _help("training of every strategy that starts from the base model",
                                    default_factory=TrainSettings)
    n_boot: int = _help("bootstrap resamples for the metric intervals", default=200)
    device: str = _help("default device: auto, cpu, cuda or cuda:N (the command line overrides it)", default="auto")
    description: str = _help("one line on what the suite is for", default="")
    source: str = _help("the file it came from", default="")

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not is_label(self.name):
            raise ValueError(f"name {self.name!r} must use only {LABEL_CHARS}: it names the results directory")
        for what in ("datasets", "backbones", "strategies"):
            if not getattr(self, what):
                raise ValueError(f"{what} must be a non-empty list; a suite names datasets, backbones and strategies")
        if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in self.seeds) or not self.seeds:
            raise ValueError(f"seeds must be integers >= 0, got {list(self.seeds)!r}")
        if not self.data_fractions or any(isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1
                                          for f in self.data_fractions):
            raise ValueError(f"data_fractions must be numbers with 0 < f <= 1 (shares of the spec-z train set), "
                             f"got {list(self.data_fractions)!r}")
        if self.crop is not None and (isinstance(self.crop, bool) or not isinstance(self.crop, int) or self.crop < 1):
            raise ValueError(f"crop must be a size in pixels (an integer >= 1) or \"none\", got {self.crop!r}")
        if isinstance(self.n_boot, bool) or not isinstance(self.n_boot, int) or self.n_boot < 1:
            raise ValueError(f"[evaluation] n_boot must be an integer >= 1, got {self.n_boot!r}")
        check_device_name(self.device)
        for what, key in (("datasets", lambda d: d.label), ("backbones", lambda b: b.name), ("seeds", str),
                          ("data_fractions", str)):
            seen = [key(v) for v in getattr(self, what)]
            repeated = sorted({str(k) for k in seen if seen.count(k) > 1})
            if repeated:
                raise ValueError(f"{what} repeats {', '.join(repeated)}; give each once (datasets: set a 'label')")
        owner: dict[str, int] = {}
        for i, spec in enumerate(self.strategies):
            for _, label in spec.expand():
                if label in owner:
                    raise ValueError(f"strategies[{owner[label]}] and strategies[{i}] both give runs labelled "
                                     f"{label!r}; set a 'tag' on one of them")
                owner[label] = i

    @classmethod
    def help(cls) -> dict[str, str]:
        """Field name -> help text."""
        return {f.name: f.metadata.get("help", "") for f in fields(cls)}


def list_suites() -> list[str]:
    """Names of the built-in suites (`zpeft/suites/*.toml`)."""
    return sorted(p.stem for p in SUITES_DIR.glob("*.toml"))


def find_suite(name_or_path: str | Path) -> Path:
    """A suite file: an existing path, else the shipped suite of that name."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = SUITES_DIR / f"{name_or_path}.toml"
    if shipped.is_file():
        return shipped
    raise SuiteError(f"no suite {str(name_or_path)!r}: not a file, and not a shipped suite "
                     f"(known: {', '.join(list_suites())})")


def load_suite(name_or_path: str | Path) -> Suite:
    """Read and validate a suite by shipped name or path."""
    path = find_suite(name_or_path)
    try:
        data = toml_loads(path.read_text())
    except TOMLDecodeError as err:
        raise SuiteError(f"suite {path}: not valid TOML: {err}") from None
    return parse_suite(data, source=str(path), default_name=to_label(path.stem), base_dir=path.parent)


def parse_suite(data: dict, source: str = "<suite>", default_name: str = "suite", base_dir: Path = Path()) -> Suite:
    """Validate the parsed TOML of a suite into a Suite; raises SuiteError naming what is wrong.

    Relative paths in it (datasets, weights, preprocessing) are taken from `base_dir`, the suite file's folder.
    """
    where = f"suite {source}"
    _check_keys(data, SUITE_KEYS, where)
    for required in ("datasets", "backbones", "strategies"):
        if required not in data:
            raise SuiteError(f"{where}: missing {required!r}; a suite names datasets, backbones and strategies")
    training = _table(data.get("training", {}), "[training]", where)
    _check_keys(training, TRAINING_KEYS, f"{where} [training]")
    evaluation = _table(data.get("evaluation", {}), "[evaluation]", where)
    _check_keys(evaluation, EVALUATION_KEYS, f"{where} [evaluation]")
    try:
        return Suite(
            name=_string(data.get("name", default_name), "name", where),
            description=_string(data.get("description", ""), "description", where),
            datasets=tuple(_dataset(d, i, where, base_dir)
                           for i, d in enumerate(_list(data["datasets"], "datasets", where))),
            backbones=tuple(_backbone(b, i, where, base_dir, data.get("crop", "none"))
                            for i, b in enumerate(_list(data["backbones"], "backbones", where))),
            strategies=tuple(_strategy(s, i, where)
                             for i, s in enumerate(_list(data["strategies"], "strategies", where))),
            seeds=tuple(_list(data.get("seeds", [0]), "seeds", where)),
            data_fractions=tuple(float(f) if isinstance(f, int) and not isinstance(f, bool) else f
                                 for f in _list(data.get("data_fractions", [1.0]), "data_fractions", where)),
            crop=None if data.get("crop", "none") == "none" else data["crop"],
            base=_settings(training.get("base", {}), TrainSettings(epochs=10), "[training.base]", where),
            finetune=_settings(training.get("finetune", {}), TrainSettings(), "[training.finetune]", where),
            n_boot=evaluation.get("n_boot", 200),
            device=_string(data.get("device", "auto"), "device", where),
            source=source,
        )
    except ValueError as err:
        if isinstance(err, SuiteError):
            raise
        raise SuiteError(f"{where}: {err}") from None


# --- entries -------------------------------------------------------------------------------------------------------

def _entry(entry: Any, what: str, index: int, keys: tuple[str, ...], where: str) -> tuple[dict, str, str]:
    """A list entry given as a name or as a table with `name`: (table, name, where it is)."""
    at = f"{where}: {what}[{index}]"
    if isinstance(entry, str):
        entry = {"name": entry}
    entry = _table(entry, f"{what}[{index}]", where, f"a name or a table {{{', '.join(keys)}}}")
    _check_keys(entry, keys, at)
    if "name" not in entry:
        raise SuiteError(f"{at}: missing 'name'")
    return entry, _string(entry["name"], "name", at), at


def _dataset(entry: Any, index: int, where: str, base_dir: Path) -> DatasetSpec:
    from zpeft.data.registry import DATASETS, is_pair, unknown_dataset

    entry, name, at = _entry(entry, "datasets", index, DATASET_KEYS, where)
    if name not in DATASETS and not Path(name).is_absolute() and is_pair(base_dir / name):
        name = str(base_dir / name)  # relative to the suite file
    if (problem := unknown_dataset(name)) is not None:
        raise SuiteError(f"{at}: {problem}")
    options = _table(entry.get("options", {}), "options", at)
    for key, value in options.items():
        if not isinstance(value, _SCALARS):
            raise SuiteError(f"{at}: option {key!r} must be a string, number or boolean, got {value!r}")
    label = _string(entry.get("label", ""), "label", at)
    if label and not is_label(label):
        raise SuiteError(f"{at}: label {label!r} may use only {LABEL_CHARS} (it goes in file names)")
    return DatasetSpec(name, dict(options), label)


def _backbone(entry: Any, index: int, where: str, base_dir: Path, crop: Any) -> BackboneSpec:
    entry, name, at = _entry(entry, "backbones", index, BACKBONE_KEYS, where)
    if not backbones.is_known(name):
        raise SuiteError(f"{at}: unknown backbone {name!r}; known: {', '.join(backbones.list_backbones())}, "
                         f"or timm/<any timm model> (zpeft list backbones 'timm/*pattern*'), or one registered by "
                         "a module: zpeft run --import MODULE, or an entry point zpeft.backbones")
    weights = entry.get("weights")
    if weights is not None:
        weights = _string(weights, "weights", at)
    preprocessing = entry.get("preprocessing")
    if preprocessing is not None and not isinstance(preprocessing, (str, dict)):
        raise SuiteError(f"{at}: preprocessing must be a file (preprocessing.json) or a table, got {preprocessing!r}")
    try:
        return backbone_spec(name, weights, preprocessing, base_dir=base_dir, crop=None if crop == "none" else crop)
    except WeightsError as err:
        raise SuiteError(f"{at}: {err}") from None


def _strategy(entry: Any, index: int, where: str) -> StrategySpec:
    entry, name, at = _entry(entry, "strategies", index, STRATEGY_KEYS, where)
    known = strategies.list_strategies()
    if name not in known:
        raise SuiteError(f"{at}: unknown strategy {name!r}; known: {', '.join(known)}")
    at = f"{at} ({name})"
    grid = {}
    for key, values in _table(entry.get("grid", {}), "grid", at).items():
        values = tuple(values) if isinstance(values, list) else (values,)
        if not values:
            raise SuiteError(f"{at}: grid {key!r} is an empty list; give at least one value")
        if len(set(map(repr, values))) != len(values):
            raise SuiteError(f"{at}: grid {key!r} repeats a value: {list(values)}")
        grid[key] = values
    lr = entry.get("lr")
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0):
        raise SuiteError(f"{at}: lr must be a number > 0, got {lr!r}")
    lr_grid = _lr_grid(entry.get("lr_grid", []), lr, at)
    tag = entry.get("tag")
    if tag is not None:
        tag = _string(tag, "tag", at)
        if not is_label(tag):
            raise SuiteError(f"{at}: tag {tag!r} must be non-empty {LABEL_CHARS}")
    spec = StrategySpec(name, grid, None if lr is None else float(lr), tag, lr_grid)
    try:
        spec.expand()
    except (TypeError, ValueError) as err:
        raise SuiteError(f"{at}: {err}") from None
    return spec


def _lr_grid(values: Any, lr: float | None, at: str) -> tuple[float, ...]:
    """`lr_grid`: the rates `zpeft tune` tried; it must hold the entry's `lr`, which it says was tuned."""
    if not isinstance(values, list) or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0
                                           for v in values):
        raise SuiteError(f"{at}: lr_grid must be a list of numbers > 0, got {values!r}")
    if values and (lr is None or not any(math.isclose(lr, v, rel_tol=1e-9) for v in values)):
        raise SuiteError(f"{at}: lr_grid {values} says lr was tuned on it, but lr {lr!r} is not one of its values")
    return tuple(float(v) for v in values)


def _settings(table: Any, default: TrainSettings, section: str, where: str) -> TrainSettings:
    table = _table(table, section, where)
    allowed = {f.name: f for f in fields(TrainSettings)}
    _check_keys(table, tuple(allowed), f"{where} {section}")
    values = {}
    for key, value in table.items():
        values[key] = _typed(value, allowed[key], f"{where} {section} {key}")
    try:
        return replace(default, **values)
    except ValueError as err:
        raise SuiteError(f"{where} {section}: {err}") from None


def _typed(value: Any, f, at: str) -> Any:
    """A TOML value checked against a TrainSettings field's type (taken from its default)."""
    default = f.default if f.default is not MISSING else None
    if f.name == "lr" or isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SuiteError(f"{at}: expected a number, got {value!r}")
        return float(value)
    expected = type(default)
    if expected is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise SuiteError(f"{at}: expected an integer, got {value!r}")
    if not isinstance(value, expected):
        raise SuiteError(f"{at}: expected {expected.__name__}, got {value!r}")
    return value


# --- generic checks ------------------------------------------------------------------------------------------------

def _check_keys(table: dict, allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise SuiteError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed)}")


def _table(value: Any, what: str, where: str, expected: str = "a table") -> dict:
    if not isinstance(value, dict):
        raise SuiteError(f"{where}: {what} must be {expected}, got {value!r}")
    return value


def _list(value: Any, what: str, where: str) -> list:
    if not isinstance(value, list) or not value:
        raise SuiteError(f"{where}: {what} must be a non-empty list, got {value!r}")
    return value


def _string(value: Any, what: str, where: str) -> str:
    if not isinstance(value, str):
        raise SuiteError(f"{where}: {what} must be a string, got {value!r}")
    return value


def _default_dataset_label(name: str) -> str:
    """The registry name, or the name a pair at a path gives itself (two entries of one dataset need labels)."""
    from zpeft.data.registry import DATASETS, pair_name

    return to_label(name if name in DATASETS else pair_name(name))
