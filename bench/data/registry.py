"""Dataset pairs by name or path: built-ins (`toy`, `sim-*`), survey directories and pair descriptions.

`load_pair("sim-quick")`, `load_pair("data/sim-paper")` and `load_pair("galaxiesml.toml")`
all give a DatasetPair; `list_datasets()` names the built-ins.

A pair directory holds `manifest.json` (what `zpeft data simulate` writes): `name`,
`bands`, `label_keys` {"photo": ..., "spec": ...}, optionally `template_keys` (the same, for the
template-fit photo-z column) and `files` {kind: {split: file name}},
plus whatever describes how the data were made; everything but `files` becomes the pair's
`meta`. A simulated pair (`source` "sim") gets its best-case template-fit reference from a grizy fit to its
test files' catalogue magnitudes, made on reading (zpeft.simsurvey.reference), not from a column, and its
yardsticks (on-stamp photometry fitted, an off-the-shelf BPZ fit: zpeft.yardsticks.survey) beside it.

A pair description (TOML or JSON) points at real survey files::

    name = "galaxiesml"                 # names the dataset in run ids and reports (default: the file name)
    bands = ["g", "r", "i", "z", "y"]   # image channels in order (default grizy)

    [meta]                              # optional: copied into the pair's meta and every record
    survey = "HSC PDR2"

    [photo]
    label_key = "lp_zPDF_CLASSIC"       # label column (required)
    train = "photo/train.hdf5"          # HDF5 in the GalaxiesML layout ...
    val = "photo/val.hdf5"
    test = "photo/test.hdf5"

    [spec]
    label_key = "specz_redshift"
    id_key = "object_id"                # optional (default object_id)
    template_key = "photoz_best"        # optional: a template-fit photo-z from the image bands (grizy),
                                        # scored as a reference (default: none; a deep label fit is not one)
    catalogue = "spec_catalogue.ecsv"   # FITS only: table of labels/ids for every split of this kind
    train = "spec_train.fits"           # ... or a FITS cube with its catalogue ...
    val = { path = "cutouts/val", catalogue = "spec_val.csv" }   # ... or a cutout directory
    test = { path = "spec_test.fits", hdu = "IMAGES" }

Each kind names `train`, `val` and `test`, as a path or a table with `path` and any of
`label_key`, `id_key`, `template_key`, `catalogue`, `hdu`, `bands` overriding the kind's settings. Relative
paths are taken from the description's directory. The format follows the suffix
(.hdf5/.h5: HDF5; .fits and friends or a directory: FITS).
"""

from __future__ import annotations

import inspect
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from zpeft.checksum import matches
from zpeft.conventions import KINDS, SPLITS
from zpeft.data.checks import (
    BANDS,
    ImageMode,
    Problem,
    Scan,
    available_memory,
    check_disjoint,
    check_same_split_across_sets,
    raise_problems,
)
from zpeft.data.fits import is_fits, scan_fits
from zpeft.data.hdf5 import scan_hdf5
from zpeft.data.synthetic import toy_pair
from zpeft.data.types import DatasetPair, GalaxySet
from zpeft.registry import Registry
from zpeft.tomlread import TOMLDecodeError
from zpeft.tomlread import loads as toml_loads

HDF5_SUFFIXES = (".hdf5", ".h5", ".he5")
Storage = Literal["auto", "memory", "stream"]
STORAGES = ("auto", "memory", "stream")
MEMORY_SHARE = 0.5  # "auto" streams a pair whose images would need more than this share of the available memory
DESCRIPTION_SUFFIXES = (".toml", ".json")
MANIFEST = "manifest.json"
_SOURCE_KEYS = {"path", "label_key", "id_key", "template_key", "catalogue", "hdu", "bands"}

DATASETS: Registry[Callable[..., DatasetPair]] = Registry("dataset")
register_dataset = DATASETS.register  # decorator: a factory returning a DatasetPair becomes `load_pair(name)`


def list_datasets(pattern: str = "*") -> list[str]:
    """Names of the built-in datasets matching a shell-style wildcard."""
    return DATASETS.names(pattern)


def load_pair(name_or_path: str | Path, **options) -> DatasetPair:
    """A built-in dataset by name (with its options), or the pair at a path (option: max_rows)."""
    key = str(name_or_path)
    if key in DATASETS:
        factory = DATASETS[key]
        try:
            inspect.signature(factory).bind(**options)
        except TypeError:
            allowed = ", ".join(inspect.signature(factory).parameters)
            raise TypeError(f"dataset {key!r} takes options {allowed}; got {', '.join(options)}") from None
        return factory(**options)
    if (problem := unknown_dataset(key)) is not None:
        raise KeyError(problem)
    return read_pair(key, **options)


def unknown_dataset(key: str) -> str | None:
    """Why `key` names no dataset (neither a built-in nor a pair directory or description), or None."""
    if key in DATASETS or is_pair(Path(key)):
        return None
    return (f"unknown dataset {key!r}; known: {', '.join(list_datasets())}; or give a directory with {MANIFEST} "
            "or a pair description (.toml/.json)")


@register_dataset("toy")
def _toy(n_photo: int = 600, n_spec: int = 300, size: int = 16, seed: int = 0) -> DatasetPair:
    """Synthetic blobs whose colour encodes z: seconds to train on, for tests and smoke runs."""
    return toy_pair(n_photo=n_photo, n_spec=n_spec, size=size, seed=seed)


def _simulated(preset: str) -> Callable[..., DatasetPair]:
    def load(seed: int = 0, label_model: str = "deep", progress: bool = True,
             max_rows: int | None = None, storage: Storage = "auto") -> DatasetPair:
        from zpeft.simsurvey import simulate  # GalSim and SkyPy are an optional extra

        return read_pair(simulate(preset, out_dir=None, seed=seed, label_model=label_model, progress=progress),
                         max_rows=max_rows, storage=storage)
    load.__doc__ = f"The simulated survey, preset {preset!r}, written once and cached by config hash."
    return load


for _preset in ("tiny", "quick", "paper"):
    register_dataset(f"sim-{_preset}")(_simulated(_preset))


def pair_name(path: str | Path) -> str:
    """The name a pair gives itself (its manifest's or description's `name`), else its file or folder name.

    Run ids and reports name a dataset by it; an unreadable file gives the file name (reading it reports why).
    """
    path = Path(path)
    try:
        if path.is_dir():
            name = json.loads((path / MANIFEST).read_text()).get("name")
        else:
            text = path.read_text()
            name = (toml_loads(text) if path.suffix.lower() == ".toml" else json.loads(text)).get("name")
    except (OSError, ValueError, AttributeError):
        name = None
    return name if isinstance(name, str) and name else (path.name if path.is_dir() else path.stem)


def is_pair(path: Path) -> bool:
    """A directory with a manifest, or a pair description file."""
    return (path / MANIFEST).is_file() if path.is_dir() else path.suffix.lower() in DESCRIPTION_SUFFIXES


def source_format(path: Path) -> Literal["hdf5", "fits"]:
    """The reader a path needs, from its suffix (a directory holds FITS cutouts)."""
    if path.is_dir() or is_fits(path):
        return "fits"
    if path.suffix.lower() in HDF5_SUFFIXES:
        return "hdf5"
    raise ValueError(f"unknown file type {path.suffix!r}; expected {', '.join(HDF5_SUFFIXES)} (HDF5), "
                     ".fits (FITS) or a directory of FITS cutouts")


@dataclass(frozen=True)
class FileSource:
    """One split of one catalogue on disk, and how to read it."""

    path: Path
    label_key: str | None
    format: Literal["hdf5", "fits"]
    catalogue: Path | None = None
    id_key: str = "object_id"
    bands: tuple[str, ...] = BANDS
    hdu: int | str | None = None
    template_key: str | None = None  # the template-fit reference column; None: no reference from the file

    def scan(self, mode: ImageMode | Literal["stream"] = "load", max_rows: int | None = None,
             id_offset: int = 0) -> Scan:
        """Check the file and collect its columns (images with mode 'load', or left in the file with 'stream')."""
        if not self.path.exists():
            return Scan(str(self.path), [Problem(str(self.path), None, "does not exist")])
        if mode == "stream" and self.format != "hdf5":
            mode = "load"  # only HDF5 images are read batch by batch; FITS cutouts are loaded
        if self.format == "hdf5":
            return scan_hdf5(self.path, self.label_key, bands=self.bands, max_rows=max_rows, id_key=self.id_key,
                             id_offset=id_offset, mode=mode, template_key=self.template_key)
        return scan_fits(self.path, self.catalogue, label_key=self.label_key, id_key=self.id_key, hdu=self.hdu,
                         bands=self.bands, max_rows=max_rows, id_offset=id_offset, mode=mode,
                         template_key=self.template_key)


def pair_sources(path: str | Path) -> tuple[str, dict, dict[str, dict[str, FileSource]]]:
    """Name, meta and the file of every split of a pair directory or description."""
    path = Path(path)
    if path.is_dir():
        return _manifest_sources(path)
    return _description_sources(path)


def read_pair(path: str | Path, *, max_rows: int | None = None, storage: Storage = "auto") -> DatasetPair:
    """Read a pair directory (with manifest.json) or a pair description (TOML/JSON).

    `storage`: "memory" loads every image; "stream" leaves HDF5 images in their files, read
    batch by batch (FITS cutouts are always loaded); "auto" streams when the images would take
    more than half the memory available. `max_rows` keeps the first rows of every split
    (quick looks and smoke runs). Raises ValueError naming file, key and rows on bad input, or
    when splits share galaxies.
    """
    name, meta, sources = pair_sources(path)
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}")
    mode = "load" if storage == "memory" else "stream"
    if storage == "auto" and fits_in_memory(sources, max_rows):
        mode = "load"
    sets: dict[str, dict[str, GalaxySet]] = {}
    problems = []
    offset = 0  # files without ids get row-index ids; the offset keeps them unique across files
    ids_by_kind = {}
    sim_reference = _sim_reference(Path(path), meta)
    for kind, splits in sources.items():
        sets[kind], ids = {}, {}
        ids_by_kind[kind] = ids
        for split, source in splits.items():
            scan = source.scan(mode, max_rows=max_rows, id_offset=offset)
            if sim_reference is not None and split in sim_reference[0] and not scan.problems:
                scan.z_template, scan.yardsticks = sim_reference[1](source.path, len(scan.z))
            sets[kind][split] = scan.galaxy_set(f"{name}/{kind}/{split}")
            offset += len(sets[kind][split])
            if not scan.ids_from_rows:
                ids[split] = (scan.file, scan.ids)
        problems += check_disjoint(kind, ids)
    raise_problems(problems + check_same_split_across_sets(ids_by_kind))
    return DatasetPair(name, sets["photo"], sets["spec"], meta=meta)


def _sim_reference(path: Path, meta: dict) -> tuple[tuple[str, ...], Callable[[Path, int], tuple]] | None:
    """For a simulated pair directory: (the splits to fit, file and row count -> (the best-case grizy template fit
    of its first rows, their yardsticks)), the pair's non-ML references (zpeft.simsurvey.reference,
    zpeft.yardsticks.survey). None for other pairs, and with a warning for a simulated one whose manifest cannot
    say how it was made or without the simulation's packages.
    """
    if not (path.is_dir() and meta.get("source") == "sim"):
        return None
    try:
        from zpeft.simsurvey.reference import FITTED_SPLITS, catalogue_photoz, manifest_config
        from zpeft.simsurvey.simulate import require_sim_extra
        from zpeft.yardsticks.survey import survey_yardsticks

        require_sim_extra()
        config, seed, label_model = manifest_config(meta)
    except (ImportError, ValueError) as err:
        warnings.warn(f"simulated pair {path}: no template-fit reference ({err})", stacklevel=3)
        return None
    pixel_scale = float(meta.get("pixel_scale", config.pixel_scale))
    return FITTED_SPLITS, lambda file, n_rows: (
        catalogue_photoz(file, config, seed, label_model, n_rows),
        survey_yardsticks(file, config, seed, label_model, pixel_scale, n_rows))


def fits_in_memory(sources: dict[str, dict[str, FileSource]], max_rows: int | None = None) -> bool:
    """Whether the pair's images (in their stored precision) take at most MEMORY_SHARE of the memory available."""
    needed = 0
    for splits in sources.values():
        for source in splits.values():
            scan = source.scan("skip", max_rows=max_rows)
            if scan.shape is None:  # a broken file: the full read reports it
                return True
            needed += int(np.prod(scan.shape)) * scan.itemsize
    available = available_memory()
    return available is None or needed <= MEMORY_SHARE * available


def _manifest_sources(path: Path) -> tuple[str, dict, dict[str, dict[str, FileSource]]]:
    manifest_file = path / MANIFEST
    manifest = json.loads(manifest_file.read_text())
    for key in ("files", "label_keys"):
        if key not in manifest:
            raise ValueError(f"file {manifest_file}: key {key!r} missing; see zpeft.data.registry for the layout")
    bands = tuple(manifest.get("bands", BANDS))
    sources = {}
    for kind in KINDS:
        files = manifest["files"].get(kind, {})
        missing = [s for s in SPLITS if s not in files]
        if missing or kind not in manifest["label_keys"]:
            raise ValueError(f"file {manifest_file}: {kind}-z set lacks a label key or the split(s) "
                             f"{', '.join(missing) or '-'}; it needs files for {', '.join(SPLITS)}")
        template_key = manifest.get("template_keys", {}).get(kind)  # optional; default: no reference column
        sources[kind] = {split: _source(path / files[split], manifest["label_keys"][kind], bands=bands,
                                        template_key=template_key) for split in SPLITS}
    for name, expected in manifest.get("sha256", {}).items():
        if not matches(path / name, expected):
            raise ValueError(f"file {path / name}: missing or does not match its checksum in {manifest_file}; "
                             "regenerate the pair (zpeft data simulate) or restore the file")
    meta = {k: v for k, v in manifest.items() if k not in ("files", "sha256")}
    return manifest.get("name", path.name), meta, sources


def _description_sources(path: Path) -> tuple[str, dict, dict[str, dict[str, FileSource]]]:
    text = path.read_text()
    try:
        desc = toml_loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (TOMLDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"file {path}: not valid {path.suffix[1:].upper()}: {err}") from None
    base = path.parent
    sources = {}
    for kind in KINDS:
        if kind not in desc:
            raise ValueError(f"file {path}: no [{kind}] table; a pair needs a photo-z and a spec-z set")
        settings = {k: v for k, v in desc[kind].items() if k not in SPLITS}
        unknown = set(settings) - _SOURCE_KEYS
        if unknown:
            raise ValueError(f"file {path}: [{kind}] has unknown key(s) {', '.join(sorted(unknown))}; "
                             f"allowed: {', '.join(sorted(_SOURCE_KEYS | set(SPLITS)))}")
        sources[kind] = {}
        for split in SPLITS:
            if split not in desc[kind]:
                raise ValueError(f"file {path}: [{kind}] has no {split!r} file")
            entry = desc[kind][split]
            entry = dict(settings, **(entry if isinstance(entry, dict) else {"path": entry}))
            if "label_key" not in entry:
                raise ValueError(f"file {path}: [{kind}] {split}: no label_key; name the label column")
            sources[kind][split] = _source(
                base / entry["path"], entry["label_key"], id_key=entry.get("id_key", "object_id"),
                catalogue=None if "catalogue" not in entry else base / entry["catalogue"],
                hdu=entry.get("hdu"), bands=tuple(entry.get("bands", desc.get("bands", BANDS))),
                template_key=entry.get("template_key"))
    label_keys = {kind: sorted({s.label_key for s in sources[kind].values()}) for kind in KINDS}
    meta = {"name": desc.get("name", path.stem), "source": "files", "description": str(path),
            "label_keys": {k: v[0] if len(v) == 1 else v for k, v in label_keys.items()}, **desc.get("meta", {})}
    return meta["name"], meta, sources


def _source(path: Path, label_key: str, **settings) -> FileSource:
    return FileSource(path, label_key, source_format(path), **settings)
