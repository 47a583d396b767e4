"""The simulated survey (README: "The simulated survey"): SkyPy galaxies, GalSim HSC-like stamps, template-fit
photo-z labels and an HSC-like spec-z selection, written in the GalaxiesML HDF5 layout.

    from zpeft.simsurvey import PRESETS, simulate
    path = simulate("quick", seed=0)          # cached under $ZPEFT_CACHE/sim/<hash>
"""

from zpeft.simsurvey.photoz import LABEL_MODELS
from zpeft.simsurvey.presets import PRESETS, SpecSelection, SurveyConfig, config_hash
from zpeft.simsurvey.simulate import cache_root, simulate

__all__ = ["LABEL_MODELS", "PRESETS", "SpecSelection", "SurveyConfig", "cache_root", "config_hash", "simulate"]
