"""Data layer: the in-memory data model, readers for survey files and preprocessing."""

from zpeft.data.fits import read_fits
from zpeft.data.hdf5 import read_hdf5
from zpeft.data.registry import list_datasets, load_pair, read_pair, register_dataset
from zpeft.data.types import SPLITS, DatasetPair, GalaxySet, concat
from zpeft.data.validate import Problem, validate_file, validate_path

__all__ = ["SPLITS", "DatasetPair", "GalaxySet", "concat", "read_hdf5", "read_fits", "read_pair", "load_pair",
           "list_datasets", "register_dataset", "Problem", "validate_file", "validate_path"]
