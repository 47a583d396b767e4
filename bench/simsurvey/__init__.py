"""The simulated survey (DESIGN.md section 6): SkyPy galaxies, GalSim HSC-like stamps, template-fit
photo-z labels and an HSC-like spec-z selection, written in the GalaxiesML HDF5 layout.

    from bench.simsurvey import PRESETS, simulate
    path = simulate("quick", seed=0)          # cached under $ZPEFT_CACHE/sim/<hash>
"""

from bench.simsurvey.photoz import LABEL_MODELS
from bench.simsurvey.presets import PRESETS, SpecSelection, SurveyConfig, config_hash
from bench.simsurvey.simulate import cache_root, simulate

__all__ = ["LABEL_MODELS", "PRESETS", "SpecSelection", "SurveyConfig", "cache_root", "config_hash", "simulate"]
