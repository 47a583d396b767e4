"""Generate a simulated survey pair end to end and cache it by config hash."""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from zpeft.conventions import SPLITS
from zpeft.simsurvey.catalog import build_catalog, deep_photometry
from zpeft.simsurvey.photometry import HSC_BANDS, ZERO_POINT
from zpeft.simsurvey.photoz import LABEL_MODELS, photoz_labels
from zpeft.simsurvey.presets import SurveyConfig, config_hash, resolve
from zpeft.simsurvey.render import Optics, RenderJob, render_jobs, sky_sigma
from zpeft.simsurvey.writer import (
    LABEL_KEYS,
    copy_images,
    damaged_files,
    file_name,
    fill_images,
    read_manifest,
    set_rows,
    write_manifest,
    write_tables,
)

RENDER_CHUNK = 128  # galaxies per worker task: small enough to keep both cores busy to the end


def cache_root() -> Path:
    """$ZPEFT_CACHE, default ~/.cache/zpeft."""
    return Path(os.environ.get("ZPEFT_CACHE", "~/.cache/zpeft")).expanduser()


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def simulate(preset: str | SurveyConfig, out_dir: str | Path | None = None, *, seed: int = 0,
             label_model: str = "deep", workers: int | None = None, progress: bool = True) -> Path:
    """Write a simulated photo-z / spec-z pair and return its directory.

    With `out_dir` None the pair lives under $ZPEFT_CACHE/sim/<hash of config, seed, label
    model>; a complete directory with the same hash (anywhere) is returned as is. Stamps are
    taken from a finished pair with the same galaxies when one is found (re-labelling with
    another label model then takes seconds).
    """
    _require_sim_extra()
    config = resolve(preset)
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    if label_model not in LABEL_MODELS:
        raise ValueError(f"unknown label model {label_model!r}; known: {', '.join(LABEL_MODELS)}")
    key = config_hash(config, seed=seed, label_model=label_model)
    out = Path(out_dir) if out_dir is not None else cache_root() / "sim" / key
    done = read_manifest(out)
    if done is not None and done.get("config_hash") == key:
        damaged = damaged_files(out, done)
        if not damaged:
            return out
        warnings.warn(f"simulated survey {out}: {', '.join(damaged)} missing or not matching the manifest's "
                      "checksums; generating it again", stacklevel=2)
    if out.exists() and any(out.iterdir()) and done is None:
        raise FileExistsError(f"{out} exists and is not a simulated survey; choose another output directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        _generate(tmp, config, seed, label_model, key, workers or default_workers(), progress, out)
        if out.exists():
            shutil.rmtree(out)  # an older pair in this place (different config): replaced whole
        os.replace(tmp, out)
    except OSError:
        finished = read_manifest(out)  # another process finished the same pair first
        if finished is None or finished.get("config_hash") != key:
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _require_sim_extra() -> None:
    missing = [name for name in ("galsim", "skypy", "speclite") if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f"the simulated survey needs {', '.join(missing)}: pip install 'zpeft[sim]'")


def _generate(directory: Path, config: SurveyConfig, seed: int, label_model: str, key: str, workers: int,
              progress: bool, final: Path) -> None:
    t0 = time.perf_counter()
    catalog = build_catalog(config, seed, progress)
    t1 = time.perf_counter()
    catalog = _with_labels(catalog, config, seed, label_model, progress)
    t2 = time.perf_counter()
    optics = Optics(config.stamp, config.pixel_scale, config.hsc_seeing, config.seeing_scatter, config.psf_beta,
                    sky_sigma(config.hsc_depth, config.hsc_seeing, config.psf_beta, config.pixel_scale, config.stamp))
    attrs = {"bands": list(HSC_BANDS), "pixel_scale": config.pixel_scale, "sky_sigma": list(optics.sky_sigma),
             "zero_point": ZERO_POINT, "source": "sim", "preset": config.name, "seed": seed, "label_model": label_model}
    counts = write_tables(directory, catalog, config.stamp, attrs)
    render_key = config_hash(config, seed=seed)
    donor = _find_donor(render_key, final)
    if donor is not None:
        copy_images(directory, donor)
    else:
        fill_images(directory, _render_stream(catalog, seed, optics, workers), sum(counts.values()), progress)
    t3 = time.perf_counter()
    from zpeft import __version__

    write_manifest(directory, {
        "name": f"sim-{config.name}", "source": "sim", "preset": config.name, "seed": seed,
        "label_model": label_model, "config": config.to_dict(), "config_hash": key, "render_hash": render_key,
        "bands": list(HSC_BANDS), "pixel_scale": config.pixel_scale, "sky_sigma": list(optics.sky_sigma),
        "zero_point": ZERO_POINT, "label_keys": dict(LABEL_KEYS),
        "files": {kind: {split: file_name(kind, split) for split in SPLITS} for kind in ("photo", "spec")},
        "counts": {kind: {split: counts[(kind, split)] for split in SPLITS} for kind in ("photo", "spec")},
        "in_both": int((catalog["in_photo"] & catalog["in_spec"]).sum()),
        "timing_s": {"catalog": round(t1 - t0, 2), "labels": round(t2 - t1, 2), "images": round(t3 - t2, 2),
                     "total": round(t3 - t0, 2), "workers": workers,
                     "images_from": None if donor is None else str(donor)},
        "zpeft_version": __version__,
    })


def _with_labels(catalog: pd.DataFrame, config: SurveyConfig, seed: int, label_model: str,
                 progress: bool) -> pd.DataFrame:
    """Template-fit photo-z for every catalogued galaxy (spec-z ones too, as real catalogues have)."""
    flux, sigma = deep_photometry(catalog, len(config.deep_filters))
    if "hsc2017-i" in config.deep_filters:  # the prior is p(z | i) on the label catalogue's own i
        k = config.deep_filters.index("hsc2017-i")
        i_mag = ZERO_POINT - 2.5 * np.log10(np.maximum(flux[:, k], sigma[:, k]))
    else:
        i_mag = catalog["i_cmodel_mag"].to_numpy()
    result = photoz_labels(flux, sigma, i_mag, config, seed, label_model, progress)
    return catalog.assign(photoz=result.z_median, photoz_l68=result.z_lo68, photoz_u68=result.z_hi68,
                          photoz_chi2=result.chi2)


def _render_stream(catalog: pd.DataFrame, seed: int, optics: Optics, workers: int):
    keys, starts, jobs = [], [], []
    for kind in ("photo", "spec"):
        for k, split in enumerate(SPLITS):
            rows = set_rows(catalog, kind, k)
            flux = rows[[f"{b}_flux_true" for b in HSC_BANDS]].to_numpy()
            for start in range(0, len(rows), RENDER_CHUNK):
                part = slice(start, start + RENDER_CHUNK)
                jobs.append(RenderJob(seed, rows["object_id"].to_numpy()[part], flux[part],
                                      rows["half_light_radius"].to_numpy()[part], rows["ellipticity"].to_numpy()[part],
                                      rows["bulge_fraction"].to_numpy()[part]))
                keys.append((kind, split))
                starts.append(start)
    for key, start, images in zip(keys, starts, render_jobs(jobs, optics, workers)):
        yield key, start, images


def _find_donor(render_key: str, final: Path) -> Path | None:
    """A finished pair with the same galaxies and stamps: in the cache, or beside (or at) the output,
    which is replaced only after its stamps have been copied."""
    for place in (final.parent, cache_root() / "sim"):
        for manifest in sorted(place.glob("*/manifest.json")) if place.is_dir() else []:
            found = read_manifest(manifest.parent)
            if found and found.get("render_hash") == render_key and not damaged_files(manifest.parent, found):
                return manifest.parent
    return None
