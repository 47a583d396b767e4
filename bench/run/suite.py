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
    tag = "slow"                            # optional suffix of the display label: lora-r2-slow
    data_fractions = [1.0]                  # optional: only some of the suite's fractions, for this entry

    [[strategies]]                          # rates written by `zpeft tune`: one per data fraction (regime),
    name = "full"                           # each chosen on that regime's validation data from lr_grid
    lr = {"0.25" = 3e-3, "1" = 1e-3}
    lr_grid = [1e-4, 1e-3, 1e-2]

    [training.base]                         # TrainSettings fields: the base model (and `combined`, which replaces it)
    lr = 3e-3
    lr_grid = [1e-3, 3e-3, 1e-2]            # optional, written by `zpeft tune`: the base rate was tuned on it
    [training.finetune]                     # the same fields: every strategy that starts from the base model
    epochs = 40                             # a cap (safety limit): training ends by the stopping rule
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
STRATEGY_KEYS = ("name", "grid", "lr", "lr_grid", "tag", "data_fractions")
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
    """One `[[strategies]]` entry: a registered strategy, its parameter grid and an optional learning rate.

    `lr` is one rate for every data fraction, or a rate per fraction ({fraction: rate}), as `zpeft
    tune` writes them: a rate tuned for one regime (spec-z training size) is not used in another.
    """

    name: str
    grid: dict[str, tuple] = field(default_factory=dict)  # parameter -> values; one run per combination
    lr: float | dict[float, float] | None = None
    tag: str | None = None
    lr_grid: tuple[float, ...] = ()  # the grid `zpeft tune` chose the per-fraction rates from; () when set by hand
    data_fractions: tuple[float, ...] = ()  # the suite fractions this entry runs at; (): all of them

    def fractions(self, suite_fractions: tuple[float, ...]) -> tuple[float, ...]:
        """The data fractions this entry runs at, in the suite's order."""
        if not self.data_fractions:
            return suite_fractions
        return tuple(f for f in suite_fractions if any(math.isclose(f, g, rel_tol=1e-9) for g in self.data_fractions))

    def rate(self, fraction: float) -> float | None:
        """The entry's rate at a data fraction: its one rate, its rate for that fraction, or None."""
        if isinstance(self.lr, dict):
            return next((r for f, r in self.lr.items() if math.isclose(f, fraction, rel_tol=1e-9)), None)
        return self.lr

    def tuned_for(self, fraction: float) -> bool:
        """True when the rate at `fraction` was chosen by `zpeft tune` for that very fraction."""
        return bool(self.lr_grid) and isinstance(self.lr, dict) and self.rate(fraction) is not None

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
                                default_factory=TrainSettings)
    finetune: TrainSettings = _help("training of every strategy that starts from the base model",
                                    default_factory=TrainSettings)
    base_lr_grid: tuple[float, ...] = _help("the grid `zpeft tune` chose the base model's rate from; () when "
                                            "set by hand", default=())
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
        for i, spec in enumerate(self.strategies):
            fractions = spec.fractions(self.data_fractions)
            if len(fractions) != len(spec.data_fractions or fractions):
                raise ValueError(f"strategies[{i}] ({spec.name}): data_fractions {list(spec.data_fractions)} must be "
                                 f"among the suite's {list(self.data_fractions)}")
            if isinstance(spec.lr, dict):
                missing = [f for f in fractions if spec.rate(f) is None]
                extra = [f for f in spec.lr if not any(math.isclose(f, g, rel_tol=1e-9) for g in fractions)]
                if missing or extra:
                    raise ValueError(f"strategies[{i}] ({spec.name}): lr gives rates for data fractions "
                                     f"{sorted(spec.lr)}, the entry runs at {list(fractions)}; give one rate "
                                     "per data fraction")
        if self.base_lr_grid and (self.base.lr is None or not any(
                math.isclose(self.base.lr, v, rel_tol=1e-9) for v in self.base_lr_grid)):
            raise ValueError(f"[training.base] lr_grid {list(self.base_lr_grid)} says lr was tuned on it, but lr "
                             f"{self.base.lr!r} is not one of its values")
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
    base_table = dict(_table(training.get("base", {}), "[training.base]", where))
    base_lr_grid = _lr_grid(base_table.pop("lr_grid", []), "[training.base]", where)
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
            base=_settings(base_table, TrainSettings(), "[training.base]", where),
            base_lr_grid=base_lr_grid,
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
    lr = _rates(entry.get("lr"), at)
    lr_grid = _lr_grid(entry.get("lr_grid", []), "lr_grid", at)
    if lr_grid and not isinstance(lr, dict):
        raise SuiteError(f"{at}: lr_grid says the rates were tuned, and tuned rates are per data fraction: write "
                         f"lr = {{\"<fraction>\" = <rate>, ...}} (as `zpeft tune` does), or drop lr_grid")
    if lr_grid and any(not any(math.isclose(r, v, rel_tol=1e-9) for v in lr_grid) for r in lr.values()):
        raise SuiteError(f"{at}: lr_grid {list(lr_grid)} says lr was tuned on it, but lr {lr} has rates outside it")
    tag = entry.get("tag")
    if tag is not None:
        tag = _string(tag, "tag", at)
        if not is_label(tag):
            raise SuiteError(f"{at}: tag {tag!r} must be non-empty {LABEL_CHARS}")
    fractions = entry.get("data_fractions", [])
    if not isinstance(fractions, list) or any(isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1
                                              for f in fractions):
        raise SuiteError(f"{at}: data_fractions must be a list of numbers with 0 < f <= 1, got {fractions!r}")
    spec = StrategySpec(name, grid, lr, tag, lr_grid, tuple(float(f) for f in fractions))
    try:
        spec.expand()
    except (TypeError, ValueError) as err:
        raise SuiteError(f"{at}: {err}") from None
    return spec


def _rate(value: Any, what: str, at: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise SuiteError(f"{at}: {what} must be a number > 0, got {value!r}")
    return float(value)


def _rates(value: Any, at: str) -> float | dict[float, float] | None:
    """An entry's `lr`: absent, one rate, or a table of rates keyed by data fraction ("0.1" = 3e-3)."""
    if value is None or not isinstance(value, dict):
        return None if value is None else _rate(value, "lr", at)
    rates = {}
    for key, rate in value.items():
        try:
            fraction = float(key)
        except ValueError:
            fraction = math.nan
        if not 0 < fraction <= 1:
            raise SuiteError(f"{at}: lr table key {key!r} must be a data fraction, 0 < f <= 1")
        rates[fraction] = _rate(rate, f"lr[{key!r}]", at)
    if not rates:
        raise SuiteError(f"{at}: lr is an empty table; give a rate per data fraction or one number")
    return rates


def _lr_grid(values: Any, what: str, at: str) -> tuple[float, ...]:
    """`lr_grid`: the rates `zpeft tune` tried (the caller checks that the chosen rates are among them)."""
    if not isinstance(values, list) or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0
                                           for v in values):
        raise SuiteError(f"{at}: {what} must be a list of numbers > 0, got {values!r}")
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
