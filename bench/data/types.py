"""In-memory galaxy samples: the one data model every reader produces and the trainer consumes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from zpeft.conventions import SPLITS
from zpeft.data.rows import ImageRows


@dataclass
class GalaxySet:
    """Images and labels of one split of one catalogue.

    `z` is the training/evaluation label (photo-z or spec-z); `z_true` is the true redshift
    where it is known (simulations), so metrics can use it as a second reference. `z_template` is
    a template-fit photo-z from the catalogue magnitudes in the image bands (grizy), where there is
    one: the non-ML reference the report scores beside the strategies. `yardsticks` holds further non-ML photo-z
    by name (zpeft.run.records.YARDSTICKS: a fit to photometry measured on the cutouts, an off-the-shelf BPZ fit),
    where the reader made them (zpeft.yardsticks.survey).
    """

    images: ImageRows  # (N, C, H, W) raw pixels, float16 or float32, read on demand (an array is wrapped)
    z: np.ndarray  # (N,) float32 label
    ids: np.ndarray  # (N,) int64 object ids, unique within a catalogue
    z_true: np.ndarray | None = None  # (N,) float32
    mags: dict[str, np.ndarray] = field(default_factory=dict)  # band -> (N,) magnitudes
    name: str = ""
    z_template: np.ndarray | None = None  # (N,) float32 template-fit photo-z
    yardsticks: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (N,) float32 photo-z

    def __post_init__(self) -> None:
        n = len(self.z)
        try:
            self.images = ImageRows.of(self.images)
        except ValueError as err:
            raise ValueError(f"{self.name}: {err}") from None
        for what, arr in (("images", self.images), ("ids", self.ids), ("z_true", self.z_true),
                          ("z_template", self.z_template), *((f"mag {b}", m) for b, m in self.mags.items()),
                          *((f"yardstick {k}", v) for k, v in self.yardsticks.items())):
            if arr is not None and len(arr) != n:
                raise ValueError(f"{self.name}: {what} has {len(arr)} rows, labels have {n}")

    def __len__(self) -> int:
        return len(self.z)

    def subset(self, index: np.ndarray, name: str | None = None) -> "GalaxySet":
        """Rows `index` (a boolean mask or integer array) as a new set; the pixels are not copied."""
        return GalaxySet(
            images=self.images[index],
            z=self.z[index],
            ids=self.ids[index],
            z_true=None if self.z_true is None else self.z_true[index],
            mags={b: m[index] for b, m in self.mags.items()},
            name=self.name if name is None else name,
            z_template=None if self.z_template is None else self.z_template[index],
            yardsticks={k: v[index] for k, v in self.yardsticks.items()},
        )


def concat(sets: list[GalaxySet], name: str) -> GalaxySet:
    """Stack sets row-wise (pixels not copied); magnitudes, true z, template fits and yardsticks are kept only where
    every set has them."""
    bands = set.intersection(*(set(s.mags) for s in sets))
    yardsticks = set.intersection(*(set(s.yardsticks) for s in sets))
    has_true = all(s.z_true is not None for s in sets)
    has_template = all(s.z_template is not None for s in sets)
    return GalaxySet(
        images=ImageRows.concat([s.images for s in sets]),
        z=np.concatenate([s.z for s in sets]),
        ids=np.concatenate([s.ids for s in sets]),
        z_true=np.concatenate([s.z_true for s in sets]) if has_true else None,
        mags={b: np.concatenate([s.mags[b] for s in sets]) for b in sorted(bands)},
        name=name,
        z_template=np.concatenate([s.z_template for s in sets]) if has_template else None,
        yardsticks={k: np.concatenate([s.yardsticks[k] for s in sets]) for k in sorted(yardsticks)},
    )


def photo_rows_outside(photo: GalaxySet, spec: GalaxySet) -> np.ndarray:
    """Rows of `photo` whose galaxies are not in `spec`: the photo-z part of a combined set."""
    return np.flatnonzero(~np.isin(photo.ids, spec.ids))


def combine(photo: GalaxySet, spec: GalaxySet, name: str) -> GalaxySet:
    """Photo-z galaxies not in `spec`, then every spec-z galaxy: the spec-z label wins for shared galaxies."""
    return concat([photo.subset(photo_rows_outside(photo, spec)), spec], name=name)


@dataclass
class DatasetPair:
    """A photo-z catalogue and a spec-z catalogue, each split into train/val/test.

    `meta` carries what produced the data (source, preset, label-error model, seed) so
    every run record can say which data it saw.
    """

    name: str
    photo: dict[str, GalaxySet]
    spec: dict[str, GalaxySet]
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for kind, splits in (("photo", self.photo), ("spec", self.spec)):
            for split in SPLITS:
                if split not in splits:
                    raise ValueError(f"dataset {self.name!r}: {kind}-z set has no {split!r} split")
                if len(splits[split]) == 0:
                    raise ValueError(f"dataset {self.name!r}: {kind}-z {split} split is empty")

    def combined(self, split: str) -> GalaxySet:
        """Union of the photo-z and spec-z split; where a galaxy is in both, its spec-z label wins."""
        return combine(self.photo[split], self.spec[split], name=f"{self.name}/combined/{split}")

    def test_sets(self) -> dict[str, GalaxySet]:
        """The evaluation sets every model is scored on: spec-z, photo-z and combined test."""
        return {"spec": self.spec["test"], "photo": self.photo["test"], "combined": self.combined("test")}
