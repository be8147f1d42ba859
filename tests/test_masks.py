import numpy as np
import pytest

from datamodels_pipeline import masks


def test_subsets_are_pure_functions_of_seed_alpha_split_and_index():
    a = masks.draw_subsets(7, "train", 0.5, range(10, 20), 100)
    b = np.stack([masks.draw_subset(7, "train", 0.5, i, 100) for i in range(10, 20)])
    np.testing.assert_array_equal(a, b)  # chunking does not matter
    np.testing.assert_array_equal(a, masks.draw_subsets(7, "train", 0.5, range(10, 20), 100))
    assert not np.array_equal(a, masks.draw_subsets(8, "train", 0.5, range(10, 20), 100))
    assert not np.array_equal(a, masks.draw_subsets(7, "eval", 0.5, range(10, 20), 100))


def test_fixed_size_and_uniform_inclusion():
    subsets = masks.draw_subsets(0, "train", 0.25, range(4000), 40)
    mask = masks.to_mask(subsets, 40)
    assert (mask.sum(axis=1) == 10).all()
    # every example is included with probability alpha: 4000 * 0.25 = 1000 +- 4 sd (sd ~ 27)
    assert np.abs(mask.sum(axis=0) - 1000).max() < 110
    np.testing.assert_array_equal(masks.to_subsets(mask), subsets)


def test_pack_roundtrip_with_odd_width():
    mask = np.random.default_rng(0).random((5, 13)) < 0.5
    packed = masks.pack(mask)
    assert packed.shape == (5, 2)
    np.testing.assert_array_equal(masks.unpack(packed, 13), mask)


@pytest.mark.parametrize("alpha", [0.0001, 0.9999])
def test_degenerate_alpha_is_rejected(alpha):
    with pytest.raises(ValueError, match="alpha"):
        masks.subset_size(100, alpha)
