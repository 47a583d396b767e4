"""The simulated survey on the `tiny` preset: layout, determinism, caching and the physics that
the benchmark relies on (a brighter, lower-z spec-z set; sane photo-z labels; a mismatch model
that is biased at bright magnitudes)."""

from __future__ import annotations

import importlib
import json
import os
import time
from dataclasses import replace

import h5py
import numpy as np
import pytest

from zpeft.cli import main
from zpeft.data.types import SPLITS
from zpeft.simsurvey import PRESETS, config_hash, photoz, simulate
from zpeft.simsurvey.catalog import build_catalog, n_tiles
from zpeft.simsurvey.checkpoint import LOCK, locked, partial_dir
from zpeft.simsurvey.checkpoint import save_shard as real_save_shard
from zpeft.simsurvey.photometry import (
    HSC_FILTERS,
    from_mag,
    interp_table,
    kcorrect_spectra,
    kcorrect_table,
    mag_error,
    to_mag,
)
from zpeft.simsurvey.reference import catalogue_photoz, manifest_config
from zpeft.simsurvey.render import Optics, RenderJob, render_jobs
from zpeft.simsurvey.simulate import _with_labels
from zpeft.simsurvey.summary import label_stats, load_columns
from zpeft.simsurvey.writer import read_manifest

pytest.importorskip("galsim")
pytest.importorskip("skypy")

BANDS = ("g", "r", "i", "z", "y")


@pytest.fixture(scope="module")
def tiny_mismatch(cache, tiny):
    return simulate("tiny", seed=0, label_model="mismatch", workers=2, progress=False)


def _read(path):
    with h5py.File(path, "r") as f:
        return {k: f[k][:] for k in f}, dict(f.attrs)


def test_layout_follows_the_contract(tiny, cache):
    assert tiny.parent == cache / "sim"
    manifest = json.loads((tiny / "manifest.json").read_text())
    assert manifest["name"] == "sim-tiny" and manifest["source"] == "sim" and manifest["label_model"] == "deep"
    assert manifest["bands"] == list(BANDS) and manifest["pixel_scale"] == 0.168
    assert manifest["label_keys"] == {"photo": "lp_zPDF_CLASSIC", "spec": "specz_redshift"}
    assert len(manifest["sky_sigma"]) == 5 and all(s > 0 for s in manifest["sky_sigma"])
    ids = []
    for kind, label in manifest["label_keys"].items():
        for split in SPLITS:
            data, attrs = _read(tiny / manifest["files"][kind][split])
            n = len(data["object_id"])
            assert n > 0
            assert data["image"].shape == (n, 5, 64, 64) and data["image"].dtype == np.float16
            assert np.isfinite(data["image"]).all(), f"{kind}/{split} has non-finite pixels"
            assert data[label].dtype == np.float32 and ((data[label] >= 0) & (data[label] <= 6)).all()
            assert data["z_truth"].dtype == np.float32 and data["object_id"].dtype == np.int64
            for b in BANDS:
                assert data[f"{b}_cmodel_mag"].dtype == np.float32 and np.isfinite(data[f"{b}_cmodel_mag"]).all()
            assert (data["i_cmodel_mag"] < 25).all()
            assert list(attrs["bands"]) == list(BANDS) and attrs["pixel_scale"] == 0.168
            ids.append((kind, data["object_id"]))
    photo = np.concatenate([i for k, i in ids if k == "photo"])
    spec = np.concatenate([i for k, i in ids if k == "spec"])
    assert len(np.unique(photo)) == len(photo) and len(np.unique(spec)) == len(spec)


def test_a_galaxy_in_both_sets_keeps_its_id_split_and_image(tiny):
    for split in SPLITS:
        photo, _ = _read(tiny / f"photo_{split}.hdf5")
        spec, _ = _read(tiny / f"spec_{split}.hdf5")
        shared, ip, js = np.intersect1d(photo["object_id"], spec["object_id"], return_indices=True)
        np.testing.assert_array_equal(photo["image"][ip], spec["image"][js])
        np.testing.assert_array_equal(photo["z_truth"][ip], spec["z_truth"][js])
    # Splits are drawn per galaxy, so no galaxy is in one set's test split and the other's train split.
    train = np.concatenate([_read(tiny / f"{k}_train.hdf5")[0]["object_id"] for k in ("photo", "spec")])
    test = np.concatenate([_read(tiny / f"{k}_test.hdf5")[0]["object_id"] for k in ("photo", "spec")])
    assert not np.isin(test, train).any()


def test_cache_hit_returns_without_regenerating(tiny):
    before = (tiny / "photo_train.hdf5").stat().st_mtime_ns
    start = time.perf_counter()
    again = simulate("tiny", seed=0, workers=2, progress=False)
    assert again == tiny and time.perf_counter() - start < 2.0
    assert (tiny / "photo_train.hdf5").stat().st_mtime_ns == before
    assert not list(tiny.parent.glob(".*tmp*")), "a temporary directory was left behind"


def test_same_seed_gives_identical_files(tiny, tmp_path):
    copy = simulate("tiny", tmp_path / "again", seed=0, workers=2, progress=False)
    for name in ("photo_train.hdf5", "spec_test.hdf5"):
        a, _ = _read(tiny / name)
        b, _ = _read(copy / name)
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name}:{key}")


def test_relabelling_in_place_replaces_the_pair_and_keeps_its_stamps(tiny, tmp_path):
    out = simulate("tiny", tmp_path / "pair", seed=0, workers=2, progress=False)
    simulate("tiny", out, seed=0, label_model="mismatch", workers=2, progress=False)
    assert json.loads((out / "manifest.json").read_text())["label_model"] == "mismatch"
    np.testing.assert_array_equal(_read(out / "spec_val.hdf5")[0]["image"], _read(tiny / "spec_val.hdf5")[0]["image"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pair"]


def test_stamps_depend_on_seed_and_object_only_not_on_chunking_or_workers(tiny):
    cat = build_catalog(PRESETS["tiny"], seed=0).head(6)
    flux = cat[[f"{b}_flux_true" for b in BANDS]].to_numpy()
    optics = Optics(64, 0.168, (0.77, 0.76, 0.58, 0.68, 0.68), 0.15, 3.5, (0.035, 0.036, 0.061, 0.13, 0.28))

    def jobs(seed, size):
        return [RenderJob(seed, cat["object_id"].to_numpy()[s:s + size], flux[s:s + size],
                          cat["half_light_radius"].to_numpy()[s:s + size], cat["ellipticity"].to_numpy()[s:s + size],
                          cat["bulge_fraction"].to_numpy()[s:s + size]) for s in range(0, len(cat), size)]

    serial = np.concatenate(list(render_jobs(jobs(0, 6), optics, workers=1)))
    pooled = np.concatenate(list(render_jobs(jobs(0, 2), optics, workers=2)))
    np.testing.assert_array_equal(serial, pooled)
    other = np.concatenate(list(render_jobs(jobs(1, 6), optics, workers=1)))
    assert not np.array_equal(serial, other)


def test_different_seed_gives_a_different_catalogue():
    a = build_catalog(PRESETS["tiny"], seed=0)
    b = build_catalog(PRESETS["tiny"], seed=1)
    assert len(a) != len(b) or not np.array_equal(a["z_truth"].to_numpy(), b["z_truth"].to_numpy())
    np.testing.assert_array_equal(a["z_truth"].to_numpy(), build_catalog(PRESETS["tiny"], seed=0)["z_truth"].to_numpy())


def test_spec_set_is_brighter_and_at_lower_redshift_than_photo_set(tiny):
    photo = load_columns(tiny, "photo", ("z_truth", "i_cmodel_mag", "g_cmodel_mag", "z_cmodel_mag"))
    spec = load_columns(tiny, "spec", ("z_truth", "i_cmodel_mag", "specz_redshift"))
    assert spec["z_truth"].median() < photo["z_truth"].median() - 0.3
    assert spec["i_cmodel_mag"].median() < photo["i_cmodel_mag"].median() - 1.0
    assert np.abs(spec["specz_redshift"] - spec["z_truth"]).max() < 1e-3


def test_deep_labels_are_cosmos_like_and_worse_for_fainter_galaxies():
    # Every i < 25 galaxy of a small area, labels only (no stamps): enough galaxies per magnitude bin.
    config = replace(PRESETS["tiny"], photo_area_deg2=0.02, spec_area_deg2=0.02)
    cat = _with_labels(build_catalog(config, seed=3), config, seed=3, label_model="deep", progress=False)
    overall = label_stats(cat["photoz"].to_numpy(), cat["z_truth"].to_numpy())
    assert 0.005 < overall["sigma_nmad"] < 0.05 and overall["outlier_015"] < 0.1 and abs(overall["bias"]) < 0.02
    i = cat["i_cmodel_mag"].to_numpy()
    bright = label_stats(cat["photoz"].to_numpy()[i < 23], cat["z_truth"].to_numpy()[i < 23])
    faint = label_stats(cat["photoz"].to_numpy()[i > 24], cat["z_truth"].to_numpy()[i > 24])
    assert faint["sigma_nmad"] > bright["sigma_nmad"] and faint["outlier_015"] >= bright["outlier_015"]


def test_mismatch_labels_err_systematically_at_bright_magnitudes(tiny, tiny_mismatch):
    manifest = json.loads((tiny_mismatch / "manifest.json").read_text())
    assert manifest["label_model"] == "mismatch" and manifest["timing_s"]["images_from"] == str(tiny)
    cols = ("z_truth", "i_cmodel_mag", "photoz_label")
    deep, mism = load_columns(tiny, "spec", cols), load_columns(tiny_mismatch, "spec", cols)
    np.testing.assert_array_equal(deep["z_truth"], mism["z_truth"])
    bright = deep["i_cmodel_mag"].to_numpy() < 22
    d = label_stats(deep["photoz_label"].to_numpy()[bright], deep["z_truth"].to_numpy()[bright])
    m = label_stats(mism["photoz_label"].to_numpy()[bright], mism["z_truth"].to_numpy()[bright])
    assert m["sigma_nmad"] > 2 * d["sigma_nmad"]
    assert abs(m["bias"]) > abs(d["bias"]) or m["outlier_015"] > d["outlier_015"]


def test_basis_fluxes_agree_with_skypy_mag_ab():
    from skypy.utils.photometry import mag_ab

    wave, flux = kcorrect_spectra()
    zs = np.array([0.05, 0.7, 1.9, 3.5])
    ref = mag_ab(wave, flux, list(HSC_FILTERS), redshift=zs)
    z_table, table = kcorrect_table(HSC_FILTERS)
    np.testing.assert_allclose(-2.5 * np.log10(interp_table(z_table, table, zs)), ref, atol=5e-3)


def test_magnitudes_turn_back_into_the_fluxes_they_came_from_and_upper_limits_into_zero_flux():
    flux = np.array([[100.0, 2.0, -3.0, 0.5, 40.0]])
    sigma = np.array([[1.0, 1.0, 1.0, 1.0, 50.0]])
    mag, magerr = to_mag(flux, sigma).astype(np.float32), mag_error(flux, sigma).astype(np.float32)
    back, err = from_mag(mag, magerr)
    np.testing.assert_allclose(err, sigma, rtol=1e-6)
    np.testing.assert_allclose(back, [[100.0, 2.0, 0.0, 0.0, 0.0]], rtol=1e-6)  # below 1 sigma: 0 +- sigma
    with pytest.raises(ValueError, match="finite"):
        from_mag(np.full((1, 5), np.nan), magerr)


def test_the_grizy_fit_recovers_the_redshift_of_noiseless_template_galaxies():
    config = PRESETS["tiny"]
    templates, zs, _ = photoz.label_setup(config, 0, "deep", HSC_FILTERS)
    rng = np.random.default_rng(1)
    zi = rng.choice(np.flatnonzero((zs >= 0.2) & (zs <= 1.2)), 200)  # where five bands pin z down at i = 22
    flux = templates[zi, rng.integers(0, templates.shape[1], 200)]
    flux *= 10 ** (-0.4 * (22.0 - 27.0)) / flux[:, 2:3]
    mag, magerr = to_mag(flux, 1e-3 * flux), mag_error(flux, 1e-3 * flux)
    dz = np.abs(photoz.hsc_wide_photoz(mag, magerr, config, 0).z_median - zs[zi]) / (1 + zs[zi])
    assert np.median(dz) < 0.01 and np.mean(dz < 0.05) >= 0.95
    reversed_bands = photoz.hsc_wide_photoz(mag[:, ::-1], magerr, config, 0).z_median
    assert np.mean(np.abs(reversed_bands - zs[zi]) / (1 + zs[zi]) < 0.05) < 0.2  # the colours do the work
    with pytest.raises(ValueError, match=r"\(N, 5\)"):
        photoz.hsc_wide_photoz(mag[:, :4], magerr[:, :4], config, 0)


def test_a_read_simulated_pair_scores_a_grizy_fit_of_its_test_files_not_the_deep_labels(tiny):
    from zpeft.data.registry import read_pair

    pair = read_pair(tiny)
    manifest = read_manifest(tiny)
    for kind, label in (("spec", "photoz_label"), ("photo", "lp_zPDF_CLASSIC")):
        sets = getattr(pair, kind)
        assert sets["train"].z_template is None and sets["val"].z_template is None  # the report scores test sets
        cols, _ = _read(tiny / f"{kind}_test.hdf5")
        template = sets["test"].z_template
        np.testing.assert_array_equal(template, catalogue_photoz(tiny / f"{kind}_test.hdf5", *manifest_config(manifest)))
        assert np.mean(np.abs(template - cols[label]) > 0.01) > 0.2  # not the deep u + grizy + YJH label fit
        deep, grizy = (label_stats(z, cols["z_truth"]) for z in (cols[label], template))
        assert deep["sigma_nmad"] < grizy["sigma_nmad"] < 0.2  # fewer, shallower bands: a worse fit, but a fit
    photoz._hsc_setup.cache_clear()  # the same numbers from a fresh setup: deterministic, not cached
    again = read_pair(tiny)
    for kind in ("spec", "photo"):
        np.testing.assert_array_equal(getattr(again, kind)["test"].z_template, getattr(pair, kind)["test"].z_template)
    assert pair.test_sets()["combined"].z_template is not None


def test_a_manifest_whose_config_does_not_hash_to_its_key_is_refused(tiny):
    manifest = read_manifest(tiny)
    assert manifest_config(manifest)[1:] == (0, "deep")
    altered = {**manifest, "config": {**manifest["config"], "deep_error_floor": 0.05}}
    with pytest.raises(ValueError, match="does not hash to its config_hash"):
        manifest_config(altered)


def test_bad_requests_name_the_problem(tmp_path):
    with pytest.raises(KeyError, match="unknown simulated-survey preset 'huge'"):
        simulate("huge", tmp_path / "x")
    with pytest.raises(ValueError, match="unknown label model 'noisy'"):
        simulate("tiny", tmp_path / "x", label_model="noisy")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a simulated survey"):
        simulate("tiny", tmp_path / "mine")
    with pytest.raises(ValueError, match="photo_area_deg2"):
        replace(PRESETS["tiny"], photo_area_deg2=1.0)
    assert main(["data", "simulate", "--preset", "huge", "-o", str(tmp_path / "y"), "--workers", "1"]) == 2


def test_a_damaged_survey_file_is_refused_by_the_reader_and_regenerated_in_the_cache(tiny, tmp_path, monkeypatch):
    import shutil

    from zpeft.data.registry import read_pair
    from zpeft.simsurvey.writer import damaged_files, read_manifest

    copy = tmp_path / "sim" / tiny.name
    shutil.copytree(tiny, copy)
    victim = copy / "spec_test.hdf5"
    data = bytearray(victim.read_bytes())
    data[-100] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"spec_test.hdf5: missing or does not match its checksum"):
        read_pair(copy)
    monkeypatch.setenv("ZPEFT_CACHE", str(tmp_path))
    with pytest.warns(UserWarning, match="spec_test.hdf5 missing or not matching"):
        again = simulate("tiny", seed=0, workers=2, progress=False)
    assert again == copy and damaged_files(copy, read_manifest(copy)) == []
    assert _read(copy / "spec_test.hdf5")[0]["image"].tobytes() == _read(tiny / "spec_test.hdf5")[0]["image"].tobytes()


class Killed(Exception):
    """Stands for the process being killed in the middle of a generation."""


def _watch_shards(monkeypatch, die_after: int | None = None) -> list[str]:
    """Names of the shards a run saves, in order; with `die_after`, the run dies once it has saved that many."""
    sim = importlib.import_module("zpeft.simsurvey.simulate")  # the module, not the function of the same name
    saved = []

    def save(directory, shard, images):
        if die_after is not None and len(saved) == die_after:
            raise Killed(f"killed before saving shard {shard.name}")
        real_save_shard(directory, shard, images)
        saved.append(shard.name)

    monkeypatch.setattr(sim, "save_shard", save)
    return saved


def test_an_interrupted_generation_resumes_from_its_last_shard_and_writes_the_same_bytes(tiny, tmp_path,
                                                                                         monkeypatch):
    monkeypatch.setenv("ZPEFT_CACHE", str(tmp_path / "cache"))  # no finished pair to take stamps from
    out = tmp_path / "run" / "pair"
    _watch_shards(monkeypatch, die_after=2)
    with pytest.raises(Killed):
        simulate("tiny", out, seed=0, workers=1, progress=False)
    partial = partial_dir(out, config_hash(PRESETS["tiny"], seed=0, label_model="deep"))
    assert not out.exists() and len(list((partial / "shards").glob("*.npy"))) == 2
    assert not list(partial.rglob("*.tmp-*")), "a temporary file was left behind"

    sim = importlib.import_module("zpeft.simsurvey.simulate")
    builds = []
    monkeypatch.setattr(sim, "build_catalog", lambda *args, **kw: builds.append(args) or build_catalog(*args, **kw))
    saved = _watch_shards(monkeypatch)
    simulate("tiny", out, seed=0, workers=2, progress=False)
    manifest = read_manifest(out)
    assert manifest["sha256"] == read_manifest(tiny)["sha256"]
    assert len(saved) == 4 and manifest["resumed"] == {"catalog": True, "shards_found": 2, "shards": 6}
    assert builds == [], "the saved catalogue was built again"
    assert sorted(p.name for p in out.parent.iterdir()) == ["pair"], "checkpoints were left behind"


def test_the_number_of_workers_changes_no_byte(tmp_path, monkeypatch):
    monkeypatch.setenv("ZPEFT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(photoz, "FIT_JOB", 2 * photoz.FIT_CHUNK)  # several photo-z tasks
    config = replace(PRESETS["tiny"], tile_area_deg2=0.015, stamp=32)  # two tiles, cheaper stamps
    assert n_tiles(config) == 2
    runs = [read_manifest(simulate(config, tmp_path / f"w{w}" / "pair", workers=w, progress=False)) for w in (1, 2)]
    assert [m["timing_s"]["workers"] for m in runs] == [1, 2]
    assert runs[0]["sha256"] == runs[1]["sha256"]


def test_a_partial_directory_of_another_config_is_not_reused(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("ZPEFT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run" / "pair"
    _watch_shards(monkeypatch, die_after=3)
    with pytest.raises(Killed):  # same galaxies and stamps, other labels
        simulate("tiny", out, seed=0, label_model="mismatch", workers=1, progress=False)
    [stale] = out.parent.glob(".pair.partial-*")
    # Put under the name the deep-label run looks for: only its contents can tell it is another config's.
    stale.rename(partial_dir(out, config_hash(PRESETS["tiny"], seed=0, label_model="deep")))
    saved = _watch_shards(monkeypatch)
    simulate("tiny", out, seed=0, workers=2, progress=False)
    manifest = read_manifest(out)
    assert manifest["sha256"] == read_manifest(tiny)["sha256"]
    assert manifest["resumed"] == {"catalog": False, "shards_found": 0, "shards": 6} and len(saved) == 6
    assert sorted(p.name for p in out.parent.iterdir()) == ["pair"]


def test_a_partial_directory_is_locked_by_one_owner_and_a_dead_owner_holds_nothing(tmp_path):
    partial = tmp_path / ".pair.partial-abc"
    partial.mkdir()
    (partial / LOCK).write_text("999999999\n")  # left by a killed process: a file, but no lock
    with locked(partial) as mine:
        assert mine and (partial / LOCK).read_text() == f"{os.getpid()}\n"
        with locked(partial, wait=False) as other:
            assert not other
    with locked(partial, wait=False) as again:
        assert again


def _holds_file(args: tuple[int, str]) -> bool:
    """In a pool worker: whether descriptor `fd` is still open on the file at `path`."""
    fd, path = args
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        return False


def test_forked_workers_do_not_keep_their_parents_lock(tmp_path):
    # A worker that outlived a killed parent would otherwise hold the lock, and a resumed run would wait forever.
    from zpeft.simsurvey import checkpoint
    from zpeft.simsurvey.pool import forked_map

    partial = tmp_path / ".pair.partial-abc"
    with locked(partial):
        [fd] = checkpoint._HELD
        assert _holds_file((fd, str(partial / LOCK)))
        assert list(forked_map(_holds_file, [(fd, str(partial / LOCK))] * 2, workers=2)) == [False, False]
