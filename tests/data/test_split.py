import numpy as np
import pytest

from circtune.data.split import labelled_subset, split_by_flavor
from circtune.errors import ConfigError, DataError


def test_split_holds_out_flavor(small_dataset):
    split = split_by_flavor(small_dataset.metadata, ("hv",), seed=1)
    flavors = small_dataset.metadata.flavor
    assert set(flavors[split.train]) == {"lvt", "svt"}
    assert set(flavors[split.validation]) == {"hv"}
    assert set(flavors[split.test]) == {"hv"}


def test_split_parts_are_disjoint_and_complete(small_dataset):
    split = split_by_flavor(small_dataset.metadata, ("hv",), seed=1)
    joined = np.concatenate([split.train, split.validation, split.test])
    assert len(joined) == small_dataset.n_samples
    assert len(np.unique(joined)) == small_dataset.n_samples


def test_split_keeps_mismatch_draws_together(small_dataset):
    split = split_by_flavor(small_dataset.metadata, ("hv",), seed=3)
    metadata = small_dataset.metadata

    def groups(indices):
        return {(metadata.device[i], metadata.corner[i], metadata.temperature_c[i]) for i in indices}

    assert groups(split.validation).isdisjoint(groups(split.test))


def test_split_is_deterministic(small_dataset):
    first = split_by_flavor(small_dataset.metadata, ("hv",), seed=7)
    second = split_by_flavor(small_dataset.metadata, ("hv",), seed=7)
    assert np.array_equal(first.validation, second.validation)
    assert np.array_equal(first.test, second.test)


def test_split_seed_changes_validation(small_dataset):
    parts = {tuple(split_by_flavor(small_dataset.metadata, ("hv",), seed=seed).validation) for seed in range(6)}
    assert len(parts) > 1


def test_split_absent_flavor(small_dataset):
    with pytest.raises(DataError, match=r"\['hvt'\] are not in the data"):
        split_by_flavor(small_dataset.metadata, ("hvt",))


def test_split_empty_training_part(small_dataset):
    with pytest.raises(DataError, match="leaves no training samples"):
        split_by_flavor(small_dataset.metadata, ("lvt", "svt", "hv"))


def test_split_single_held_out_group(dataset_factory):
    dataset = dataset_factory(corners=("tt",), temperatures_c=(27.0,))
    only_n = dataset.take(np.flatnonzero(dataset.metadata.polarity == "n"))
    with pytest.raises(DataError, match="1 device group"):
        split_by_flavor(only_n.metadata, ("hv",))


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.5])
def test_split_rejects_fraction(small_dataset, fraction):
    with pytest.raises(ConfigError, match="validation_fraction"):
        split_by_flavor(small_dataset.metadata, ("hv",), validation_fraction=fraction)


def test_labelled_subset_is_subset_and_deterministic():
    train = np.arange(10, 60)
    first = labelled_subset(train, 8, seed=2)
    assert set(first) <= set(train)
    assert len(first) == 8
    assert np.array_equal(first, labelled_subset(train, 8, seed=2))


@pytest.mark.parametrize("size", [0, 51])
def test_labelled_subset_rejects_size(size):
    with pytest.raises(ConfigError, match="downstream training size"):
        labelled_subset(np.arange(50), size, seed=0)
