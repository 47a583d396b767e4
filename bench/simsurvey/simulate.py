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
from tqdm.auto import tqdm

from zpeft.conventions import SPLITS
from zpeft.simsurvey.catalog import build_catalog, deep_photometry
from zpeft.simsurvey.checkpoint import (
    ASSEMBLY,
    Shard,
    clear,
    load_catalog,
    load_shard,
    locked,
    partial_dir,
    plan_shards,
    save_catalog,
    save_shard,
    shard_done,
)
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
SHARD_CHUNKS = 32  # render chunks per checkpoint shard (4096 galaxies, 168 MB of stamps): what a killed run loses


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
    another label model then takes seconds). A run that is killed keeps its work beside the
    output (`.<name>.partial-<hash>`): calling again with the same arguments resumes from the
    last finished shard of stamps. A second process asking for the same pair waits for the first.
    """
    require_sim_extra()
    config = resolve(preset)
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    if label_model not in LABEL_MODELS:
        raise ValueError(f"unknown label model {label_model!r}; known: {', '.join(LABEL_MODELS)}")
    key = config_hash(config, seed=seed, label_model=label_model)
    out = Path(out_dir) if out_dir is not None else cache_root() / "sim" / key
    partial = partial_dir(out, key)
    if _complete(out, key, warn=True):
        _discard_leftover(partial)
        return out
    if out.exists() and any(out.iterdir()) and read_manifest(out) is None:
        raise FileExistsError(f"{out} exists and is not a simulated survey; choose another output directory")
    with locked(partial):
        if not _complete(out, key):  # else another process finished it while this one waited
            _generate(partial, config, seed, label_model, key, workers or default_workers(), progress, out)
            _publish(partial, out)
        shutil.rmtree(partial)  # checkpoints go only once the pair is in place
    return out


def _publish(partial: Path, out: Path) -> None:
    """Rename the assembled pair to `out`; an older pair there (other config, or damaged) is moved into `partial`
    first, so a kill at any point leaves either pair whole, never a half-deleted one."""
    if out.exists():
        old = partial / "replaced"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
    os.replace(partial / ASSEMBLY, out)


def _complete(out: Path, key: str, warn: bool = False) -> bool:
    """Whether `out` holds the finished pair of config hash `key`, its files matching their checksums."""
    done = read_manifest(out)
    if done is None or done.get("config_hash") != key:
        return False
    damaged = damaged_files(out, done)
    if damaged and warn:
        warnings.warn(f"simulated survey {out}: {', '.join(damaged)} missing or not matching the manifest's "
                      "checksums; generating it again", stacklevel=3)
    return not damaged


def _discard_leftover(partial: Path) -> None:
    """Remove the checkpoints of a finished pair (a run killed after publishing it), unless a process holds them."""
    if partial.is_dir():
        with locked(partial, wait=False) as mine:
            if mine:
                shutil.rmtree(partial)


def require_sim_extra() -> None:
    """ImportError naming the `sim` extra's missing packages (GalSim, SkyPy, speclite, desc-bpz), if any."""
    missing = [name for name in ("galsim", "skypy", "speclite", "desc_bpz") if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f"the simulated survey needs {', '.join(missing)}: pip install 'zpeft[sim]'")


def _generate(partial: Path, config: SurveyConfig, seed: int, label_model: str, key: str, workers: int,
              progress: bool, final: Path) -> None:
    """Build the pair in `partial`/pair, from the checkpoints already in `partial` where there are any."""
    t0 = time.perf_counter()
    catalog = load_catalog(partial, key)
    catalog_saved = catalog is not None
    if catalog is None:
        clear(partial)  # shards without their catalogue belong to no known generation
        catalog = build_catalog(config, seed, progress, workers)
    t1 = time.perf_counter()
    if not catalog_saved:
        catalog = _with_labels(catalog, config, seed, label_model, progress, workers)
        save_catalog(partial, catalog, key)
    t2 = time.perf_counter()
    optics = Optics(config.stamp, config.pixel_scale, config.hsc_seeing, config.seeing_scatter, config.psf_beta,
                    sky_sigma(config.hsc_depth, config.hsc_seeing, config.psf_beta, config.pixel_scale, config.stamp))
    attrs = {"bands": list(HSC_BANDS), "pixel_scale": config.pixel_scale, "sky_sigma": list(optics.sky_sigma),
             "zero_point": ZERO_POINT, "source": "sim", "preset": config.name, "seed": seed, "label_model": label_model}
    render_key = config_hash(config, seed=seed)
    donor = _find_donor(render_key, final)
    shards, found = ([], 0) if donor is not None else _render_shards(partial, catalog, seed, optics, workers, progress)
    directory = partial / ASSEMBLY
    shutil.rmtree(directory, ignore_errors=True)  # a killed assembly's files may be torn: assembled again
    directory.mkdir()
    counts = write_tables(directory, catalog, config.stamp, attrs)
    if donor is not None:
        copy_images(directory, donor)
    else:
        fill_images(directory, (((s.kind, s.split), s.start, load_shard(partial, s)) for s in shards),
                    sum(counts.values()), progress)
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
        "resumed": {"catalog": catalog_saved, "shards_found": found, "shards": len(shards)},
        "zpeft_version": __version__,
    })


def _with_labels(catalog: pd.DataFrame, config: SurveyConfig, seed: int, label_model: str,
                 progress: bool, workers: int = 1) -> pd.DataFrame:
    """Template-fit photo-z for every catalogued galaxy (spec-z ones too, as real catalogues have)."""
    flux, sigma = deep_photometry(catalog, len(config.deep_filters))
    if "hsc2017-i" in config.deep_filters:  # the prior is p(z | i) on the label catalogue's own i
        k = config.deep_filters.index("hsc2017-i")
        i_mag = ZERO_POINT - 2.5 * np.log10(np.maximum(flux[:, k], sigma[:, k]))
    else:
        i_mag = catalog["i_cmodel_mag"].to_numpy()
    result = photoz_labels(flux, sigma, i_mag, config, seed, label_model, progress, workers)
    return catalog.assign(photoz=result.z_median, photoz_l68=result.z_lo68, photoz_u68=result.z_hi68,
                          photoz_chi2=result.chi2)


def _render_shards(partial: Path, catalog: pd.DataFrame, seed: int, optics: Optics, workers: int,
                   progress: bool) -> tuple[list[Shard], int]:
    """Render the shards not on disk yet, saving each once its last chunk is drawn; returns (all shards, found)."""
    sets = {(kind, split): set_rows(catalog, kind, k) for kind in ("photo", "spec") for k, split in enumerate(SPLITS)}
    shards = plan_shards({key: len(rows) for key, rows in sets.items()}, SHARD_CHUNKS * RENDER_CHUNK)
    shape = (len(HSC_BANDS), optics.stamp, optics.stamp)
    todo = [s for s in shards if not shard_done(partial, s, shape, np.dtype(np.float16))]
    owners, jobs = [], []
    for shard in todo:
        for job in _chunk_jobs(sets[(shard.kind, shard.split)].iloc[shard.start:shard.stop], seed):
            owners.append(shard)
            jobs.append(job)
    found, total = len(shards) - len(todo), sum(len(s) for s in shards)
    left = len(todo)
    with tqdm(total=total, initial=total - sum(len(s) for s in todo), desc="rendering", unit="gal",
              disable=not progress) as bar:
        bar.set_postfix_str(f"{found} of {len(shards)} shards found done, {left} to render")
        pending: list[np.ndarray] = []
        for shard, images in zip(owners, render_jobs(jobs, optics, workers)):
            pending.append(images)
            bar.update(len(images))
            if sum(len(p) for p in pending) == len(shard):
                save_shard(partial, shard, np.concatenate(pending))
                pending, left = [], left - 1
                bar.set_postfix_str(f"{found} of {len(shards)} shards found done, {left} to render")
    return shards, found


def _chunk_jobs(rows: pd.DataFrame, seed: int) -> list[RenderJob]:
    """The galaxies of `rows`, in chunks of RENDER_CHUNK."""
    flux = rows[[f"{b}_flux_true" for b in HSC_BANDS]].to_numpy()
    ids, radius = rows["object_id"].to_numpy(), rows["half_light_radius"].to_numpy()
    ellipticity, bulge = rows["ellipticity"].to_numpy(), rows["bulge_fraction"].to_numpy()
    return [RenderJob(seed, ids[s:s + RENDER_CHUNK], flux[s:s + RENDER_CHUNK], radius[s:s + RENDER_CHUNK],
                      ellipticity[s:s + RENDER_CHUNK], bulge[s:s + RENDER_CHUNK])
            for s in range(0, len(rows), RENDER_CHUNK)]


def _find_donor(render_key: str, final: Path) -> Path | None:
    """A finished pair with the same galaxies and stamps: in the cache, or beside (or at) the output,
    which is replaced only after its stamps have been copied."""
    for place in (final.parent, cache_root() / "sim"):
        for manifest in sorted(place.glob("*/manifest.json")) if place.is_dir() else []:
            found = read_manifest(manifest.parent)
            if found and found.get("render_hash") == render_key and not damaged_files(manifest.parent, found):
                return manifest.parent
    return None
