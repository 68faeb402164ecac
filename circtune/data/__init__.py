"""Characterization datasets: the in-memory type, the HDF5 format, splits and transforms."""

from circtune.data.dataset import CORNERS, FLAVORS, POLARITIES, QUANTITIES, Dataset, Metadata
from circtune.data.h5format import DatasetFile, read_dataset, write_dataset
from circtune.data.preprocess import Normalizer, SquareLawTargets, fit_normalizer, square_law_targets
from circtune.data.split import Split, labelled_subset, split_by_flavor

__all__ = [
    "CORNERS",
    "FLAVORS",
    "POLARITIES",
    "QUANTITIES",
    "Dataset",
    "DatasetFile",
    "Metadata",
    "Normalizer",
    "Split",
    "SquareLawTargets",
    "fit_normalizer",
    "labelled_subset",
    "read_dataset",
    "split_by_flavor",
    "square_law_targets",
    "write_dataset",
]
