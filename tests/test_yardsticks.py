"""Yardsticks on the `tiny` simulated survey: on-stamp photometry against the catalogue, the best-case fit through
desc-bpz's own likelihood, the BPZ flux-scale trap, the caches, and a report completing an older references file."""

from __future__ import annotations

import shutil
from dataclasses import replace

import h5py
import numpy as np
import pytest

pytest.importorskip("galsim")
pytest.importorskip("skypy")
pytest.importorskip("desc_bpz")
pytest.importorskip("photutils")

from zpeft.data.registry import read_pair  # noqa: E402
from zpeft.report.references import FITS, complete_references, reference_table  # noqa: E402
from zpeft.run.execute import meta_hash  # noqa: E402
from zpeft.run.execute import test_references as references_of  # noqa: E402
from zpeft.run.records import RunRecord, read_references, write_record, write_references  # noqa: E402
from zpeft.simsurvey import photoz  # noqa: E402
from zpeft.simsurvey.photometry import HSC_BANDS, ZERO_POINT, from_mag  # noqa: E402
from zpeft.simsurvey.reference import catalogue_magnitudes, manifest_config  # noqa: E402
from zpeft.simsurvey.writer import read_manifest  # noqa: E402
from zpeft.yardsticks import bpz, onstamp  # noqa: E402


def _columns(path, *keys):
    with h5py.File(path, "r") as f:
        return [f[k][:] for k in keys]


def test_on_stamp_photometry_recovers_the_catalogue_flux_of_bright_compact_galaxies_within_its_error(tiny):
    """The catalogue flux is the true flux plus independent noise, so the difference is scored against both errors.

    Bright (i < 22) galaxies small enough for their light to fit the stamp (half-light radius < 0.5"): larger ones
    spill beyond the 10.8" cutout, which no photometry on it can put back (the module doc says so)."""
    pixel_scale = read_manifest(tiny)["pixel_scale"]
    pulls = []
    for path in sorted(tiny.glob("*.hdf5")):
        images, radius = _columns(path, "image", "half_light_radius")
        flux, error = onstamp.measure(images, pixel_scale)
        mag, magerr = catalogue_magnitudes(path)
        cat_flux, cat_sigma = from_mag(mag, magerr)
        keep = (mag[:, HSC_BANDS.index("i")] < 22) & (radius < 0.5)
        pulls.append(((flux - cat_flux) / np.hypot(error, cat_sigma))[keep])
    pulls = np.concatenate(pulls)
    assert len(pulls) >= 50
    assert np.all(np.abs(np.median(pulls, axis=0)) < 0.75), np.median(pulls, axis=0)  # no band biased by its error
    assert np.all(np.mean(np.abs(pulls) < 3, axis=0) >= 0.95), np.mean(np.abs(pulls) < 3, axis=0)


def test_on_stamp_errors_come_from_the_measured_sky_noise():
    """Blank stamps of known noise: fluxes scatter by their stated error, and the error follows the noise."""
    rng = np.random.default_rng(0)
    noise = np.array([0.05, 0.1, 0.2, 0.4, 0.8], np.float32)
    stamps = noise[None, :, None, None] * rng.standard_normal((400, 5, 64, 64)).astype(np.float32)
    flux, error = onstamp.measure(stamps, 0.168)
    ratio = np.std(flux, axis=0) / np.median(error, axis=0)
    assert np.all((ratio > 0.8) & (ratio < 1.2)), ratio
    np.testing.assert_allclose(np.median(error, axis=0) / noise, np.median(error[:, 0]) / noise[0], rtol=0.05)


def test_the_best_case_fit_is_reproduced_by_desc_bpz_likelihood(tiny):
    """desc-bpz's `p_c_z_t` with the best case's templates, p(z | i) prior and floored errors gives its redshifts."""
    from desc_bpz.bpz_tools_py3 import p_c_z_t

    config, seed, label_model = manifest_config(read_manifest(tiny))
    mags = [catalogue_magnitudes(tiny / f"{kind}_{split}.hdf5") for kind in ("photo", "spec")
            for split in ("train", "test")]
    mag, magerr = (np.concatenate(parts) for parts in zip(*mags))
    mag, magerr = mag[:300], magerr[:300]
    ours = photoz.hsc_wide_photoz(mag, magerr, config, seed, label_model).z_median
    templates, zs, prior = photoz._hsc_setup(config, seed, label_model)
    flux, sigma = from_mag(mag, magerr)
    sigma = photoz.with_error_floor(flux, sigma, config.deep_error_floor)
    maggies, errors = bpz.to_maggies(flux, sigma)  # errors below 1: BPZ reads larger ones as unobserved bands
    rows = photoz.prior_rows(prior, mag[:, HSC_BANDS.index("i")])
    posterior = np.stack([p_c_z_t(maggies[k], errors[k], templates).likelihood.sum(axis=1) * rows[k]
                          for k in range(len(mag))])
    cdf = np.cumsum(posterior, axis=1)
    theirs = photoz.cdf_quantile(cdf / cdf[:, -1:], zs, 0.5)
    dz = np.abs(theirs - ours) / (1 + ours)
    assert len(dz) == 300
    assert np.median(dz) < 1e-5 and dz.max() < 2e-3, (np.median(dz), dz.max())


def test_bpz_refuses_errors_it_would_read_as_unobserved_bands():
    flux, sigma = np.array([[3.0, 5.0, 8.0, 9.0, 9.5]]), np.array([[0.5, 0.8, 1.2, 2.0, 3.0]])
    with pytest.raises(ValueError, match="unobserved"):
        bpz.bpz_photoz(flux, sigma, np.array([24.0]), np.ones((len(bpz.z_grid()), 8, 5)))
    maggies, errors = bpz.to_maggies(flux, sigma)
    assert errors.max() < 1e-9 and maggies[0, 0] == pytest.approx(3.0 * 10 ** (-0.4 * ZERO_POINT))


def test_bpz_with_its_shipped_templates_finds_the_redshift_of_its_own_template_galaxies(cache):
    """A noiseless galaxy made of a shipped template at z is fitted back near z: the tables and units line up."""
    templates = bpz.template_fluxes()
    zs = bpz.z_grid()
    picks = [(k, t) for k in (30, 60, 120) for t in (0, 2)]  # z 0.31, 0.61, 1.21; El and Scd
    maggies = np.stack([templates[k, t] for k, t in picks]) * 50.0
    found = bpz.bpz_photoz(maggies, 0.02 * maggies, np.full(len(picks), 22.0), templates)
    np.testing.assert_allclose(found, [zs[k] for k, _ in picks], atol=0.03)


def _counting(monkeypatch, module, name):
    calls = []
    real = getattr(module, name)

    def wrapped(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapped)
    return calls


def test_a_survey_read_twice_reuses_its_bpz_tables_and_on_stamp_photometry(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("ZPEFT_CACHE", str(tmp_path / "fresh"))  # the survey stays; the yardstick caches start empty
    measured = _counting(monkeypatch, onstamp, "measure")
    tables = _counting(monkeypatch, bpz, "_build_template_fluxes")
    first = read_pair(tiny)
    assert len(measured) == 2 and len(tables) == 1  # one photometry per test file, one table of templates
    again = read_pair(tiny)
    assert len(measured) == 2 and len(tables) == 1  # nothing built a second time
    for kind in ("spec", "photo"):
        one, two = getattr(first, kind)["test"], getattr(again, kind)["test"]
        assert set(one.yardsticks) == {"template_onstamp", "bpz", "bpz_onstamp"}
        for name, z in one.yardsticks.items():
            np.testing.assert_array_equal(z, two.yardsticks[name])
            assert z.dtype == np.float32 and np.isfinite(z).all() and len(z) == len(one)
    assert set(first.test_sets()["combined"].yardsticks) == set(first.spec["test"].yardsticks)
    assert not first.spec["train"].yardsticks  # only the test sets are scored


def test_another_file_or_other_filters_rebuild_the_caches(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("ZPEFT_CACHE", str(tmp_path / "fresh"))
    measured = _counting(monkeypatch, onstamp, "measure")
    source = tiny / "spec_test.hdf5"
    first = onstamp.file_photometry(source, 0.168)
    onstamp.file_photometry(source, 0.168)
    assert len(measured) == 1
    other = tmp_path / "spec_test.hdf5"  # the same survey file with one galaxy's stamp changed
    shutil.copy(source, other)
    with h5py.File(other, "r+") as f:
        f["image"][0] = f["image"][0] * 2
    changed = onstamp.file_photometry(other, 0.168)
    assert len(measured) == 2
    np.testing.assert_allclose(changed["flux"][0], 2 * first["flux"][0], rtol=1e-3)
    np.testing.assert_array_equal(changed["flux"][1:], first["flux"][1:])

    tables = _counting(monkeypatch, bpz, "_build_template_fluxes")
    g = bpz.template_fluxes(("hsc2017-g",))
    bpz.template_fluxes(("hsc2017-g",))
    assert len(tables) == 1
    bpz.template_fluxes(("hsc2017-r",))  # another band
    assert len(tables) == 2
    real_curves = bpz.filter_curves
    monkeypatch.setattr(bpz, "filter_curves", lambda filters: {  # the same name, a curve shifted by 100 A
        name: curve + np.array([100.0, 0.0]) for name, curve in real_curves(filters).items()})
    shifted = bpz.template_fluxes(("hsc2017-g",))
    assert len(tables) == 3 and not np.allclose(shifted, g, rtol=1e-3, atol=0)


def test_the_report_completes_a_simulated_references_file_written_before_the_yardsticks(tiny, tmp_path):
    """Results whose references file holds labels, true z and the best case only (what older code wrote) get every
    reference row: the report reads the data the records name and adds the missing fits."""
    pair = read_pair(tiny)
    complete = references_of(pair.test_sets())
    older = {k: v for k, v in complete.items() if not k.endswith(tuple(f"_{y}" for y in ("template_onstamp", "bpz",
                                                                                            "bpz_onstamp")))}
    results = tmp_path / "results"
    write_references(results, "sim-tiny", older)
    record = RunRecord(run_id="r0", config_hash="x", suite="t", dataset="sim-tiny", backbone="cnn-small",
                       strategy="zero-shot", label="zero-shot", params={}, seed=0, data_fraction=1.0,
                       train_settings={}, status="ok", dataset_meta={**pair.meta, "pair_name": pair.name},
                       config={"dataset": {"name": str(tiny), "options": {}, "meta_hash": meta_hash(pair)}})
    write_record(record, results)
    table, notes = reference_table(results, ["sim-tiny"], n_boot=10)
    assert notes == []
    stored = read_references(results, "sim-tiny")
    assert set(stored) == set(complete) and all(np.array_equal(stored[k], complete[k]) for k in complete)
    for name in FITS:
        assert set(table[table["name"] == name]["test_set"]) == {"spec", "photo", "combined"}, name
    assert complete_references(results, "sim-tiny") == []  # complete now: not read again

    stale = tmp_path / "stale"  # records that saw other data: nothing is added
    write_references(stale, "sim-tiny", older)
    write_record(replace(record, config={"dataset": {**record.config["dataset"], "meta_hash": "other"}}), stale)
    notes = complete_references(stale, "sim-tiny")
    assert any("meta hash differs" in n for n in notes) and set(read_references(stale, "sim-tiny")) == set(older)

