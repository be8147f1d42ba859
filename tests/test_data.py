import numpy as np

from datamodels_pipeline import data


def test_split_is_deterministic_and_disjoint(tmp_path):
    a = data.prepare("digits", 1200, "test", seed=0)
    b = data.prepare("digits", 1200, "test", seed=0)
    assert data.fingerprint(a) == data.fingerprint(b)
    assert a.n_train == 1200 and a.n_targets == 597 and a.n_classes == 10
    assert (a.target_train_index == -1).all()
    assert data.fingerprint(a) != data.fingerprint(data.prepare("digits", 1200, "test", seed=1))


def test_train_targets_point_at_training_examples():
    both = data.prepare("digits", 100, "both", seed=0, n_test=30)
    assert both.n_targets == 130
    own = both.target_train_index >= 0
    np.testing.assert_array_equal(both.x_targets[own], both.x_train[both.target_train_index[own]])


def test_save_load_roundtrip_without_pickle(tmp_path):
    dataset = data.prepare("digits", 200, "test", seed=3, n_test=50)
    data.save(dataset, tmp_path / "d.npz", tmp_path / "d.json", {"name": "digits"})
    back = data.load(tmp_path / "d.npz")
    assert data.fingerprint(back) == data.fingerprint(dataset)
    assert back.image_shape == (8, 8)
