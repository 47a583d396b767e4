"""Readers load HDF5, FITS cubes and FITS cutouts into the same GalaxySet, and pairs from manifests."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from zpeft.data.fits import read_fits
from zpeft.data.hdf5 import read_hdf5
from zpeft.data.registry import read_pair
from zpeft.data.validate import validate_path

N, SIZE = 7, 8
BANDS = "grizy"


def galaxies(n=N, seed=0, first_id=100):
    rng = np.random.default_rng(seed)
    return {
        "image": rng.normal(size=(n, 5, SIZE, SIZE)).astype(np.float32),
        "z": rng.uniform(0.05, 3.0, n).astype(np.float32),
        "z_truth": rng.uniform(0.05, 3.0, n).astype(np.float32),
        "object_id": np.arange(first_id, first_id + n, dtype=np.int64),
        "mags": {b: rng.uniform(18, 25, n).astype(np.float32) for b in BANDS},
    }


def write_h5(path, g, label_key="lp_zPDF_CLASSIC", with_ids=True, dtype=np.float16):
    with h5py.File(path, "w") as f:
        f["image"] = g["image"].astype(dtype)
        f[label_key] = g["z"]
        f["z_truth"] = g["z_truth"]
        if with_ids:
            f["object_id"] = g["object_id"]
        for b, m in g["mags"].items():
            f[f"{b}_cmodel_mag"] = m
    return path


def catalogue(g, label_key="specz_redshift"):
    return Table({"object_id": g["object_id"], label_key: g["z"], "z_truth": g["z_truth"],
                  **{f"{b}_cmodel_mag": m for b, m in g["mags"].items()}})


def assert_same(s, g, image_dtype=np.float32):
    assert s.images.dtype == image_dtype
    np.testing.assert_allclose(s.images, g["image"].astype(image_dtype))
    np.testing.assert_array_equal(s.z, g["z"])
    np.testing.assert_array_equal(s.z_true, g["z_truth"])
    np.testing.assert_array_equal(s.ids, g["object_id"])
    assert sorted(s.mags) == sorted(BANDS)
    np.testing.assert_array_equal(s.mags["i"], g["mags"]["i"])


def test_hdf5_round_trip_keeps_float16_and_reads_true_z_and_mags(tmp_path):
    g = galaxies()
    s = read_hdf5(write_h5(tmp_path / "photo_train.hdf5", g), "lp_zPDF_CLASSIC")
    assert s.name == "photo_train"
    assert_same(s, g, np.float16)


def test_hdf5_float32_stays_float32_and_max_rows_takes_the_first_rows(tmp_path):
    g = galaxies()
    s = read_hdf5(write_h5(tmp_path / "f.hdf5", g, dtype=np.float32), "lp_zPDF_CLASSIC", max_rows=3, name="x")
    assert (s.name, len(s), s.images.dtype) == ("x", 3, np.float32)
    np.testing.assert_array_equal(s.ids, g["object_id"][:3])


def test_z_truth_as_label_is_not_also_the_true_z(tmp_path):
    g = galaxies()
    s = read_hdf5(write_h5(tmp_path / "f.hdf5", g), "z_truth")
    np.testing.assert_array_equal(s.z, g["z_truth"])
    assert s.z_true is None


def test_hdf5_without_ids_warns_and_numbers_rows_from_the_offset(tmp_path):
    path = write_h5(tmp_path / "f.hdf5", galaxies(), with_ids=False)
    with pytest.warns(UserWarning, match="no object id column; using row index"):
        s = read_hdf5(path, "lp_zPDF_CLASSIC", id_offset=50)
    np.testing.assert_array_equal(s.ids, np.arange(50, 50 + N))


def test_hdf5_with_other_bands_reads_their_magnitudes(tmp_path):
    g = galaxies()
    g["image"] = g["image"][:, :3]
    g["mags"] = {b: g["mags"][b] for b in "gri"}
    s = read_hdf5(write_h5(tmp_path / "f.hdf5", g), "lp_zPDF_CLASSIC", bands=("g", "r", "i"))
    assert s.images.shape[1] == 3 and sorted(s.mags) == ["g", "i", "r"]
    with pytest.raises(ValueError, match="has 3 bands"):
        read_hdf5(tmp_path / "f.hdf5", "lp_zPDF_CLASSIC")


def test_fits_cube_with_catalogue_in_the_same_file(tmp_path):
    g = galaxies()
    path = tmp_path / "cube.fits"
    fits.HDUList([fits.PrimaryHDU(g["image"]), fits.table_to_hdu(catalogue(g))]).writeto(path)
    assert_same(read_fits(path, label_key="specz_redshift"), g)


@pytest.mark.parametrize("suffix", [".ecsv", ".csv", ".fits"])
def test_fits_cube_in_named_hdu_with_separate_catalogue(tmp_path, suffix):
    g = galaxies()
    cube = tmp_path / "cube.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(g["image"], name="IMAGES")]).writeto(cube)
    cat = tmp_path / f"cat{suffix}"
    catalogue(g).write(cat)
    s = read_fits(cube, cat, label_key="specz_redshift", hdu="IMAGES")
    assert_same(s, g)


def test_fits_catalogue_problem_names_the_catalogue_file(tmp_path):
    g = galaxies()
    g["z"][4] = 7.0
    cube = tmp_path / "cube.fits"
    fits.PrimaryHDU(g["image"]).writeto(cube)
    catalogue(g).write(tmp_path / "cat.ecsv")
    with pytest.raises(ValueError, match=rf"file {tmp_path / 'cat.ecsv'}, key 'specz_redshift', row 4: redshift"):
        read_fits(cube, tmp_path / "cat.ecsv", label_key="specz_redshift")


def write_cutouts(directory, g, id_in_header=False):
    directory.mkdir()
    for k, image in enumerate(g["image"]):
        header = fits.Header({"OBJID": int(g["object_id"][k])}) if id_in_header else None
        name = f"cutout_{k:03d}.fits" if id_in_header else f"obj_{g['object_id'][k]}.fits"
        fits.PrimaryHDU(image, header=header).writeto(directory / name)
    return directory


@pytest.mark.parametrize("id_in_header", [False, True])
def test_fits_cutouts_are_matched_to_a_shuffled_catalogue_by_id(tmp_path, id_in_header):
    g = galaxies()
    directory = write_cutouts(tmp_path / "cutouts", g, id_in_header)
    cat = catalogue(g)[::-1]  # catalogue order must not matter
    cat.add_row({"object_id": 999, "specz_redshift": 1.0, "z_truth": 1.0,
                 **{f"{b}_cmodel_mag": 20.0 for b in BANDS}})  # a catalogue row without a cutout is fine
    cat.write(tmp_path / "cat.fits")
    assert_same(read_fits(directory, tmp_path / "cat.fits", label_key="specz_redshift"), g)


def test_fits_cutout_problems_name_the_cutout_file(tmp_path):
    g = galaxies()
    g["image"][2, 1, 0, 0] = np.nan
    directory = write_cutouts(tmp_path / "cutouts", g)
    catalogue(g).write(tmp_path / "cat.ecsv")
    with pytest.raises(ValueError, match=r"key 'image', row 2: NaN or inf pixels.*\(obj_102.fits\)"):
        read_fits(directory, tmp_path / "cat.ecsv", label_key="specz_redshift")
    catalogue(g)[1:].write(tmp_path / "short.ecsv")
    with pytest.raises(ValueError, match=rf"file {directory / 'obj_100.fits'}, key 'object_id': id 100 is not in"):
        read_fits(directory, tmp_path / "short.ecsv", label_key="specz_redshift")


def write_sim_dir(root, *, overlap=False):
    files = {}
    for kind, key, seed in (("photo", "lp_zPDF_CLASSIC", 0), ("spec", "specz_redshift", 10)):
        files[kind] = {}
        for i, split in enumerate(("train", "val", "test")):
            first = 0 if overlap and split == "test" else 1000 * seed + 100 * i
            write_h5(root / f"{kind}_{split}.hdf5", galaxies(seed=seed + i, first_id=first), label_key=key)
            files[kind][split] = f"{kind}_{split}.hdf5"
    manifest = {"name": "sim-tiny", "source": "sim", "preset": "tiny", "seed": 3, "label_model": "deep",
                "config": {"n": 1}, "config_hash": "abc", "bands": list(BANDS), "pixel_scale": 0.168,
                "sky_sigma": [0.1] * 5, "label_keys": {"photo": "lp_zPDF_CLASSIC", "spec": "specz_redshift"},
                "files": files}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return manifest


def test_read_pair_from_a_manifest_directory(tmp_path):
    manifest = write_sim_dir(tmp_path)
    with pytest.warns(UserWarning, match="no template-fit reference.*not a survey config"):
        pair = read_pair(tmp_path)  # a "sim" manifest the simulator did not write: no grizy fit to make
    assert pair.spec["test"].z_template is None
    assert pair.name == "sim-tiny"
    assert pair.meta == {k: v for k, v in manifest.items() if k != "files"}
    assert pair.spec["val"].name == "sim-tiny/spec/val"
    np.testing.assert_array_equal(pair.spec["val"].z, galaxies(seed=11)["z"])
    np.testing.assert_array_equal(pair.photo["test"].ids, galaxies(first_id=200)["object_id"])
    assert pair.photo["train"].images.dtype == np.float16


def test_read_pair_refuses_splits_that_share_galaxies(tmp_path):
    write_sim_dir(tmp_path, overlap=True)
    with pytest.raises(ValueError, match="photo-z test split shares object ids with the train split"):
        read_pair(tmp_path)


def test_a_spec_test_galaxy_in_the_photo_training_split_is_refused(tmp_path):
    write_sim_dir(tmp_path)
    # The spec-z test file now holds the photo-z training galaxies (ids from 0): a test-set leak.
    write_h5(tmp_path / "spec_test.hdf5", galaxies(seed=12, first_id=0), label_key="specz_redshift")
    message = "spec-z test galaxies are in the photo-z train split"
    with pytest.raises(ValueError, match=message):
        read_pair(tmp_path)
    assert any(message in str(p) for p in validate_path(tmp_path))


def test_read_pair_from_a_toml_description_mixing_hdf5_and_fits(tmp_path):
    for i, split in enumerate(("train", "val", "test")):
        write_h5(tmp_path / f"p_{split}.hdf5", galaxies(seed=i, first_id=100 * i), with_ids=False)
    spec = {split: galaxies(seed=10 + i, first_id=5000 + 100 * i) for i, split in enumerate(("train", "val", "test"))}
    fits.PrimaryHDU(spec["train"]["image"]).writeto(tmp_path / "s_train.fits")
    catalogue(spec["train"]).write(tmp_path / "spec_cat.ecsv")
    fits.HDUList([fits.PrimaryHDU(spec["val"]["image"]), fits.table_to_hdu(catalogue(spec["val"]))]).writeto(
        tmp_path / "s_val.fits")
    write_cutouts(tmp_path / "s_test", spec["test"])
    catalogue(spec["test"]).write(tmp_path / "test_cat.csv")
    (tmp_path / "pair.toml").write_text('''
name = "mixed"
[meta]
survey = "made up"
[photo]
label_key = "lp_zPDF_CLASSIC"
train = "p_train.hdf5"
val = "p_val.hdf5"
test = "p_test.hdf5"
[spec]
label_key = "specz_redshift"
catalogue = "spec_cat.ecsv"
train = "s_train.fits"
val = { path = "s_val.fits", catalogue = "s_val.fits" }
test = { path = "s_test", catalogue = "test_cat.csv" }
''')
    with pytest.warns(UserWarning, match="no object id column"):
        pair = read_pair(tmp_path / "pair.toml")
    assert pair.name == "mixed" and pair.meta["survey"] == "made up" and pair.meta["source"] == "files"
    for split, g in spec.items():
        np.testing.assert_array_equal(pair.spec[split].z, g["z"])
        np.testing.assert_array_equal(pair.spec[split].ids, g["object_id"])
    # Photo files had no ids: row-index ids must still be unique across the pair's files.
    all_ids = np.concatenate([s.ids for d in (pair.photo, pair.spec) for s in d.values()])
    assert len(np.unique(all_ids)) == len(all_ids)


def test_pair_description_errors_name_the_file_and_the_fix(tmp_path):
    desc = tmp_path / "pair.json"
    desc.write_text(json.dumps({"photo": {"train": "a.hdf5", "val": "b.hdf5", "test": "c.hdf5"}}))
    with pytest.raises(ValueError, match=rf"file {desc}: \[photo\] train: no label_key"):
        read_pair(desc)
    desc.write_text(json.dumps({"photo": {"label_key": "z", "train": "a.hdf5", "val": "b.hdf5", "test": "c.hdf5",
                                          "labelkey": "x"}, "spec": {}}))
    with pytest.raises(ValueError, match="unknown key\\(s\\) labelkey"):
        read_pair(desc)


def test_no_photoz_column_is_taken_as_the_template_fit_reference_unless_named(tmp_path):
    # photoz_label / lp_zPDF_CLASSIC are deep many-band label fits, not a fit to the images' five bands.
    g = galaxies()
    spec = write_h5(tmp_path / "spec.hdf5", g, label_key="specz_redshift")
    with h5py.File(spec, "a") as f:
        f["photoz_label"] = (g["z_truth"] * 1.02).astype(np.float32)
    assert read_hdf5(spec, "specz_redshift").z_template is None
    assert read_hdf5(write_h5(tmp_path / "photo.hdf5", g), "lp_zPDF_CLASSIC").z_template is None
    named = read_hdf5(spec, "specz_redshift", template_key="photoz_label")  # the user's choice, as named
    np.testing.assert_array_equal(named.z_template, (g["z_truth"] * 1.02).astype(np.float32))
    np.testing.assert_array_equal(named.subset(np.array([4, 1])).z_template, named.z_template[[4, 1]])


def test_template_key_is_configurable_and_a_bad_named_column_is_refused(tmp_path):
    from zpeft.data.types import concat

    g = galaxies()
    path = write_h5(tmp_path / "spec.hdf5", g, label_key="specz_redshift")
    with h5py.File(path, "a") as f:
        f["photoz_best"] = g["z_truth"]
        f["photoz_label"] = np.full(N, -99.0, np.float32)  # failed fits, as catalogues store them
    plain = read_hdf5(path, "specz_redshift")
    assert plain.z_template is None
    chosen = read_hdf5(path, "specz_redshift", template_key="photoz_best")
    np.testing.assert_array_equal(chosen.z_template, g["z_truth"])
    with pytest.raises(ValueError, match="'nope'.*missing"):
        read_hdf5(path, "specz_redshift", template_key="nope")
    with pytest.raises(ValueError, match="'photoz_label'.*outside"):
        read_hdf5(path, "specz_redshift", template_key="photoz_label")
    assert concat([chosen, plain], "both").z_template is None  # kept only where every set has it
    np.testing.assert_array_equal(concat([chosen, chosen], "twice").z_template, np.tile(g["z_truth"], 2))


def test_fits_catalogue_template_column_is_read_only_when_named(tmp_path):
    g = galaxies()
    cat = catalogue(g)
    cat["photoz_best"] = g["z_truth"]
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(g["image"]), fits.BinTableHDU(cat)]).writeto(tmp_path / "a.fits")
    assert read_fits(tmp_path / "a.fits", label_key="specz_redshift").z_template is None
    np.testing.assert_array_equal(read_fits(tmp_path / "a.fits", label_key="specz_redshift",
                                            template_key="photoz_best").z_template, g["z_truth"])
