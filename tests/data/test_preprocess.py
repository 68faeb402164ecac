import numpy as np
import pytest

from circtune.data.preprocess import fit_normalizer, signed_log_values, square_law_targets
from circtune.data.split import split_by_flavor
from circtune.errors import DataError


def test_normalizer_standardizes_training_samples(small_dataset):
    split = split_by_flavor(small_dataset.metadata, ("hv",))
    normalizer = fit_normalizer(small_dataset, split.train)
    inputs = normalizer.transform(small_dataset.take(split.train))
    spread = signed_log_values(small_dataset.take(split.train)).std(axis=0) > 1e-2
    assert inputs.dtype == np.float32
    assert np.allclose(inputs.mean(axis=0), 0.0, atol=1e-3)
    assert np.allclose(inputs.std(axis=0)[spread], 1.0, atol=1e-3)


def test_normalizer_ignores_held_out_samples(small_dataset):
    split = split_by_flavor(small_dataset.metadata, ("hv",))
    reference = fit_normalizer(small_dataset, split.train)
    values = small_dataset.values.copy()
    held_out = np.concatenate([split.validation, split.test])
    values[held_out] *= 1e3
    poisoned = type(small_dataset)(
        values=values,
        quantities=small_dataset.quantities,
        vbs=small_dataset.vbs,
        vgs=small_dataset.vgs,
        vds=small_dataset.vds,
        metadata=small_dataset.metadata,
    )
    fitted = fit_normalizer(poisoned, split.train)
    assert np.array_equal(fitted.mean, reference.mean)
    assert np.array_equal(fitted.std, reference.std)


def test_signed_log_mirrors_pmos_current(small_dataset):
    logged = signed_log_values(small_dataset)
    pmos = small_dataset.metadata.polarity == "p"
    assert np.all(logged[pmos, 0] >= 0)
    assert np.all(logged[~pmos, 0] >= 0)


def test_signed_log_keeps_sign_and_order(small_dataset):
    logged = signed_log_values(small_dataset)
    gm = small_dataset.quantity("gm").ravel()
    order = np.argsort(gm)
    assert np.all(np.diff(logged[:, 1].ravel()[order]) >= 0)


def test_normalizer_rejects_other_grid(small_dataset, dataset_factory):
    normalizer = fit_normalizer(small_dataset, np.arange(10))
    with pytest.raises(DataError, match="normalizer was fitted"):
        normalizer.transform(dataset_factory(grid=(2, 3, 5)))


def test_normalizer_rejects_empty_training(small_dataset):
    with pytest.raises(DataError, match="training part is empty"):
        fit_normalizer(small_dataset, np.array([], dtype=np.int64))


def test_square_law_targets_use_zero_vbs(small_dataset):
    targets = square_law_targets(small_dataset)
    zero = np.argmin(np.abs(small_dataset.vbs[0]))
    assert targets.current.shape == (72, 4, 5)
    assert np.array_equal(targets.current[0], np.abs(small_dataset.quantity("ibias")[0, zero]))
    assert np.all(targets.vgs >= 0)
    assert np.all(targets.vds >= 0)


def test_square_law_targets_need_zero_vbs(small_dataset):
    shifted = type(small_dataset)(
        values=small_dataset.values,
        quantities=small_dataset.quantities,
        vbs=small_dataset.vbs - 0.1,
        vgs=small_dataset.vgs,
        vds=small_dataset.vds,
        metadata=small_dataset.metadata,
    )
    with pytest.raises(DataError, match="no Vbs = 0 point"):
        square_law_targets(shifted)
