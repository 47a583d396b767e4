"""Survey configurations: a frozen dataclass per preset, hashed so outputs can be cached by config."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

# HSC-SSP Wide (PDR2, Aihara et al. 2019, table 2): median seeing FWHM (arcsec) and 5-sigma
# point-source depths (AB) per band, g r i z y.
HSC_SEEING = (0.77, 0.76, 0.58, 0.68, 0.68)
HSC_DEPTH = (26.5, 26.5, 26.2, 25.2, 24.4)
# Deep label photometry like COSMOS2020 (Weaver et al. 2022): u (CFHT), grizy (HSC deep),
# YJH (UltraVISTA-like; speclite ships Euclid Y, J, H). 5-sigma depths, AB.
DEEP_FILTERS = ("cfht_megacam-u", "hsc2017-g", "hsc2017-r", "hsc2017-i", "hsc2017-z", "hsc2017-y",
                "Euclid-Y", "Euclid-J", "Euclid-H")
DEEP_DEPTH = (27.2, 27.4, 27.1, 26.9, 26.5, 25.8, 25.6, 25.4, 25.2)


@dataclass(frozen=True)
class SpecSelection:
    """Spectroscopic success probability p(i, g - z): a bright limit softened by a preference
    for blue galaxies, as in HSC's spec-z overlap (SDSS/GAMA-like bright surveys plus deeper,
    emission-line-selected ones that favour star-forming galaxies). The defaults keep about
    5.5 % of i < 25 galaxies, at median z 0.6 (the photo-z set's is 1.27)."""

    p_max: float = 0.9  # success at the bright, blue end
    i_half: float = 21.6  # i where a blue galaxy's probability halves
    i_width: float = 0.65  # softness of the magnitude limit (mag)
    red_gz: float = 1.5  # g - z above which red galaxies are disfavoured
    red_width: float = 0.25
    red_floor: float = 0.35  # relative success kept by red galaxies (LRG-like targets)

    def __post_init__(self) -> None:
        if not 0 < self.p_max <= 1:
            raise ValueError(f"SpecSelection.p_max must be in (0, 1], got {self.p_max}")
        if self.i_width <= 0 or self.red_width <= 0:
            raise ValueError("SpecSelection widths must be > 0")


@dataclass(frozen=True)
class SurveyConfig:
    """Everything that shapes a simulated survey pair; with the seed it fixes every file byte.

    The population is drawn over `spec_area_deg2` (in tiles, so memory stays bounded); the
    spec-z set is what the success probability selects from it, and the photo-z set is a
    random thinning of the same population to `photo_area_deg2` (a galaxy may be in both and
    keeps one id: real photo-z catalogues contain the spec-z galaxies too).
    """

    name: str
    photo_area_deg2: float
    spec_area_deg2: float
    tile_area_deg2: float = 0.25
    z_max: float = 4.0
    draw_mag_limit: float = 26.0  # SkyPy's LF limit (rest B + distance modulus), deeper than i
    i_limit: float = 25.0  # cut on observed HSC i (cmodel-like)
    stamp: int = 64
    pixel_scale: float = 0.168
    psf_beta: float = 3.5  # Moffat index (seeing: 2.5-4.5); 3's wings triple the FFT cost
    seeing_scatter: float = 0.15  # lognormal scatter of FWHM around the band median
    hsc_seeing: tuple[float, ...] = HSC_SEEING
    hsc_depth: tuple[float, ...] = HSC_DEPTH
    deep_filters: tuple[str, ...] = DEEP_FILTERS
    deep_depth: tuple[float, ...] = DEEP_DEPTH
    deep_error_floor: float = 0.02  # mag, added in quadrature in the fit (zero-point/model error)
    n_templates: int = 150  # kcorrect mixtures drawn from an independent population
    prior_area_deg2: float = 0.2  # area of that independent draw (also used for p(z | i))
    z_grid_step: float = 0.01
    spec_noise: float = 1e-4
    spec_selection: SpecSelection = field(default_factory=SpecSelection)
    splits: tuple[float, float, float] = (0.6, 0.2, 0.2)

    def __post_init__(self) -> None:
        if self.photo_area_deg2 <= 0 or self.spec_area_deg2 <= 0:
            raise ValueError(f"preset {self.name!r}: areas must be > 0")
        if self.photo_area_deg2 > self.spec_area_deg2:
            raise ValueError(f"preset {self.name!r}: photo_area_deg2 ({self.photo_area_deg2}) must not exceed "
                             f"spec_area_deg2 ({self.spec_area_deg2}); the photo-z set thins the same population")
        if len(self.hsc_seeing) != 5 or len(self.hsc_depth) != 5:
            raise ValueError(f"preset {self.name!r}: hsc_seeing and hsc_depth need 5 values (g r i z y)")
        if len(self.deep_filters) != len(self.deep_depth):
            raise ValueError(f"preset {self.name!r}: deep_filters and deep_depth differ in length")
        if abs(sum(self.splits) - 1) > 1e-9 or min(self.splits) <= 0:
            raise ValueError(f"preset {self.name!r}: splits must be 3 positive fractions summing to 1, "
                             f"got {self.splits}")
        if self.stamp < 16:
            raise ValueError(f"preset {self.name!r}: stamp must be >= 16 pixels, got {self.stamp}")

    def to_dict(self) -> dict:
        return asdict(self)


# Bump when the generator's code changes what it writes: the cache key must not outlive the code behind it.
SIM_VERSION = 1


def config_hash(config: SurveyConfig, **extra) -> str:
    """Short stable hash of the full config, the generator version and run settings (seed, label model)."""
    blob = json.dumps({"config": config.to_dict(), "sim_version": SIM_VERSION, **extra}, sort_keys=True, default=list)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# Areas follow from the measured density (about 2.0e5 galaxies per deg^2 at i < 25) and the
# spec-z success rate (about 5.5 %).
PRESETS: dict[str, SurveyConfig] = {
    # Tests: ~600 photo-z and ~300 spec-z galaxies; same physics, smaller areas and template set.
    "tiny": SurveyConfig("tiny", photo_area_deg2=0.003, spec_area_deg2=0.027, tile_area_deg2=0.03,
                         n_templates=80, prior_area_deg2=0.05, splits=(0.5, 0.25, 0.25)),
    # CPU minutes: ~22k photo-z galaxies and ~14k spec-z, whose test split holds ~2.8k.
    "quick": SurveyConfig("quick", photo_area_deg2=0.11, spec_area_deg2=1.3),
    # The reference paper's sizes: ~115k photo-z and ~286k spec-z galaxies.
    "paper": SurveyConfig("paper", photo_area_deg2=0.56, spec_area_deg2=25.3, tile_area_deg2=0.5),
}


def config_from_dict(values: dict) -> SurveyConfig:
    """The SurveyConfig a `to_dict` (as a manifest stores it, JSON lists for tuples) came from."""
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    if isinstance(fields.get("spec_selection"), dict):
        fields["spec_selection"] = SpecSelection(**fields["spec_selection"])
    try:
        return SurveyConfig(**fields)
    except TypeError as err:
        raise ValueError(f"not a survey config ({err}); written by another zpeft version?") from None


def resolve(preset: str | SurveyConfig) -> SurveyConfig:
    if isinstance(preset, SurveyConfig):
        return preset
    try:
        return PRESETS[preset]
    except KeyError:
        raise KeyError(f"unknown simulated-survey preset {preset!r}; known: {', '.join(PRESETS)}") from None


