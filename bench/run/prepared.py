"""The cell's inputs: every set and split as raw image rows with their preprocessing, and spec-z data fractions.

Images are preprocessed batch by batch with statistics of the photo-z training set only. The
combined set and a spec-z data fraction are row lists over the photo-z and spec-z images,
never copies of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from zpeft.conventions import SPLITS
from zpeft.data import DatasetPair, GalaxySet
from zpeft.data.preprocess import Preprocessor
from zpeft.data.types import combine
from zpeft.training.batches import Inputs

MIN_TRAIN_GALAXIES = 16  # a data fraction that keeps fewer spec-z training (or validation) galaxies is refused
_FRACTION_STREAM = 0x5EC2  # keeps the subsample's random stream apart from training's, which also uses the seed
_VAL_STREAM = 0x5EC3  # the validation subsample's own stream: not the same permutation as the training rows


@dataclass
class PreparedData:
    """Every set and split of a pair as trainer inputs, preprocessed with statistics of the photo-z train set."""

    pair: DatasetPair
    preprocessor: Preprocessor
    sets: dict[tuple[str, str], GalaxySet]  # (set, split) -> galaxies; set is photo, spec or combined

    def inputs(self, kind: str, split: str) -> Inputs:
        """The (set, split) as raw image rows, float32 labels and this data's preprocessing."""
        galaxies = self.sets[kind, split]
        return Inputs(galaxies.images, torch.from_numpy(np.asarray(galaxies.z, dtype=np.float32)), self.preprocessor)

    @property
    def in_chans(self) -> int:
        return self.sets["photo", "train"].images.shape[1]

    @property
    def img_size(self) -> int:
        return self.sets["photo", "train"].images.cropped_shape(self.preprocessor.crop)[-1]

    @property
    def storage(self) -> str:
        """`memory` when every image is held in host memory, `stream` when some are read from files per batch."""
        return "memory" if all(s.images.in_memory for s in self.sets.values()) else "stream"


def prepare_data(pair: DatasetPair, crop: int | None = None) -> PreparedData:
    """Fit the preprocessor on photo-z train images; the combined sets are row lists over the other two."""
    preprocessor = Preprocessor.fit(pair.photo["train"].images, crop=crop)
    sets: dict[tuple[str, str], GalaxySet] = {}
    for split in SPLITS:
        sets["photo", split], sets["spec", split] = pair.photo[split], pair.spec[split]
        sets["combined", split] = pair.combined(split)
    return PreparedData(pair, preprocessor, sets)


def spec_subsample(n: int, fraction: float, seed: int, split: str = "train") -> np.ndarray:
    """Sorted rows kept of an n-row spec-z split: the first round(f n) of a seeded permutation.

    Taking a prefix of one permutation makes the subsamples nested (0.1 inside 0.2 inside ...),
    so a data-fraction curve adds galaxies rather than redrawing them. The validation split is
    drawn from its own stream.
    """
    keep = round(fraction * n)
    if keep < MIN_TRAIN_GALAXIES:
        raise ValueError(f"data fraction {fraction:g} of {n} spec-z {split} galaxies keeps {keep}; fine-tuning "
                         f"needs at least {MIN_TRAIN_GALAXIES}: use a larger fraction")
    stream = _FRACTION_STREAM if split == "train" else _VAL_STREAM
    return np.sort(np.random.default_rng([seed, stream]).permutation(n)[:keep])


def with_fraction(data: PreparedData, fraction: float, seed: int) -> PreparedData:
    """The data a user with only a `fraction` of the spectra would have: spec-z train AND validation thinned.

    Both spec-z splits keep a `fraction` of their galaxies (drawn as the training rows are), so a
    scarce regime validates, stops and is tuned on as few spectra as it trains on. The combined
    sets are rebuilt with `combine` (photo-z galaxies not in the kept spec-z rows, then the kept
    spec-z rows), so a spec-z galaxy left out keeps its photo-z label. Test sets are untouched.
    """
    if fraction >= 1.0:
        return data
    sets = dict(data.sets)
    for split in ("train", "val"):
        spec_set, photo_set = data.sets["spec", split], data.sets["photo", split]
        kept = spec_set.subset(spec_subsample(len(spec_set), fraction, seed, split))
        sets["spec", split] = kept
        sets["combined", split] = combine(photo_set, kept, name=f"{data.pair.name}/combined/{split}")
    return PreparedData(data.pair, data.preprocessor, sets)
