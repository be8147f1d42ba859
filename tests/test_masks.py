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


def test_repeat_models_train_the_held_out_masks_with_their_own_seeds():
    from datamodels_pipeline import train_chunk
    from datamodels_pipeline.seeding import Stream, int_seed

    ids = np.arange(12)                                   # 4 masks x 3 extra seeds, seed-major
    mask_index, seed_index = masks.repeat_pairs(ids, 4)
    assert mask_index.tolist() == [0, 1, 2, 3] * 3 and seed_index.tolist() == [1] * 4 + [2] * 4 + [3] * 4
    np.testing.assert_array_equal(masks.draw_subsets(0, "repeat", 0.5, ids, 50, repeated_masks=4),
                                  masks.draw_subsets(0, "eval", 0.5, mask_index, 50))
    # The eval models keep their stream; a repeat model's seed depends on (mask, seed index), not on the counts.
    assert train_chunk.model_seeds(0, "eval", 0.5, [3]) == [int_seed(0, Stream.EVAL_MODEL, 0.5, 3)]
    assert Stream.EVAL_REPEAT_MODEL == 11 and len(set(Stream)) == len(Stream)
    four, six = train_chunk.model_seeds(0, "repeat", 0.5, ids, 4), train_chunk.model_seeds(0, "repeat", 0.5, range(18), 6)
    assert four[5] == six[7]                              # (mask 1, seed 2) in both layouts
    assert len(set(four)) == 12 and not set(four) & set(train_chunk.model_seeds(0, "eval", 0.5, range(4)))
    with pytest.raises(ValueError, match="evaluate.repeated_masks"):
        masks.repeat_pairs(ids, 0)
