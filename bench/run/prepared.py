"""The cell's inputs: network-ready tensors of every set and split, and spec-z data fractions of them.

Images are preprocessed with statistics of the photo-z training set only; the combined set
reuses the photo-z and spec-z tensors (preprocessing works image by image).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from zpeft.conventions import SPLITS
from zpeft.data import DatasetPair, GalaxySet
from zpeft.data.preprocess import Preprocessor
from zpeft.data.types import combine, photo_rows_outside

MIN_TRAIN_GALAXIES = 16  # a data fraction that keeps fewer spec-z training galaxies is refused, not run
_FRACTION_STREAM = 0x5EC2  # keeps the subsample's random stream apart from training's, which also uses the seed


@dataclass
class PreparedData:
    """Network-ready tensors for every set and split, preprocessed with statistics of the photo-z train set."""

    pair: DatasetPair
    preprocessor: Preprocessor
    tensors: dict[tuple[str, str], tuple[Tensor, Tensor]]  # (set, split) -> (x, z label)
    sets: dict[tuple[str, str], GalaxySet]

    @property
    def in_chans(self) -> int:
        return next(iter(self.tensors.values()))[0].shape[1]

    @property
    def img_size(self) -> int:
        return next(iter(self.tensors.values()))[0].shape[-1]


def prepare_data(pair: DatasetPair, crop: int | None = None) -> PreparedData:
    """Fit the preprocessor on photo-z train images and transform every split of every set."""
    preprocessor = Preprocessor.fit(pair.photo["train"].images, crop=crop)
    sets: dict[tuple[str, str], GalaxySet] = {}
    tensors: dict[tuple[str, str], tuple[Tensor, Tensor]] = {}
    for split in SPLITS:
        for kind, galaxies in (("photo", pair.photo[split]), ("spec", pair.spec[split])):
            sets[kind, split] = galaxies
            tensors[kind, split] = (torch.from_numpy(preprocessor(galaxies.images)),
                                    torch.from_numpy(np.asarray(galaxies.z, dtype=np.float32)))
        sets["combined", split] = pair.combined(split)
        tensors["combined", split] = combined_tensors(sets["photo", split], tensors["photo", split],
                                                      sets["spec", split], tensors["spec", split])
    return PreparedData(pair, preprocessor, tensors, sets)


def combined_tensors(photo: GalaxySet, photo_xy: tuple[Tensor, Tensor], spec: GalaxySet,
                     spec_xy: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """The tensors of `combine(photo, spec)`, in its row order, from already preprocessed tensors."""
    rows = torch.from_numpy(photo_rows_outside(photo, spec))
    return torch.cat([photo_xy[0][rows], spec_xy[0]]), torch.cat([photo_xy[1][rows], spec_xy[1]])


def spec_subsample(n: int, fraction: float, seed: int) -> np.ndarray:
    """Sorted rows kept of an n-row spec-z train set: the first round(f n) of a seeded permutation.

    Taking a prefix of one permutation makes the subsamples nested (0.1 inside 0.2 inside ...),
    so a data-fraction curve adds galaxies rather than redrawing them.
    """
    keep = round(fraction * n)
    if keep < MIN_TRAIN_GALAXIES:
        raise ValueError(f"data fraction {fraction:g} of {n} spec-z training galaxies keeps {keep}; fine-tuning "
                         f"needs at least {MIN_TRAIN_GALAXIES}: use a larger fraction")
    return np.sort(np.random.default_rng([seed, _FRACTION_STREAM]).permutation(n)[:keep])


def with_fraction(data: PreparedData, fraction: float, seed: int) -> PreparedData:
    """The same data with only a `fraction` of the spec-z training set, in both the spec-z and the combined set.

    The combined training set is rebuilt with `combine` (photo-z galaxies not in the kept
    spec-z rows, then the kept spec-z rows), so a spec-z galaxy left out keeps its photo-z label.
    Validation and test sets are untouched.
    """
    if fraction >= 1.0:
        return data
    spec_set, photo_set = data.sets["spec", "train"], data.sets["photo", "train"]
    rows = spec_subsample(len(spec_set), fraction, seed)
    kept = spec_set.subset(rows)
    x_spec, z_spec = data.tensors["spec", "train"]
    r = torch.from_numpy(rows)
    kept_xy = (x_spec[r], z_spec[r])
    tensors = {**data.tensors, ("spec", "train"): kept_xy,
               ("combined", "train"): combined_tensors(photo_set, data.tensors["photo", "train"], kept, kept_xy)}
    sets = {**data.sets, ("spec", "train"): kept,
            ("combined", "train"): combine(photo_set, kept, name=f"{data.pair.name}/combined/train")}
    return PreparedData(data.pair, data.preprocessor, tensors, sets)
