import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datamodels_pipeline import store
from datamodels_pipeline.atomic import atomic_output

from conftest import make_models


def test_roundtrip(tmp_path, layout):
    models = make_models(layout, [3, 4, 5])
    store.write_models(tmp_path / "c.parquet", models, layout, {"chunk": 0})
    back = store.read_models(tmp_path / "c.parquet", layout)
    for field in store.Models.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(back, field), getattr(models, field))


def test_aggregate_sorts_checks_and_drops_diverged(tmp_path, layout):
    a, b = make_models(layout, [2, 3], seed=1), make_models(layout, [0, 1], seed=2)
    b.margins[1, 0] = np.nan
    b.diverged[1] = True
    store.write_models(tmp_path / "a.parquet", a, layout, {})
    store.write_models(tmp_path / "b.parquet", b, layout, {})
    result = store.aggregate([tmp_path / "a.parquet", tmp_path / "b.parquet"], layout, range(4))
    assert result.models.model_id.tolist() == [0, 2, 3]
    assert result.diverged_ids == [1]


def test_duplicate_ids_name_both_files(tmp_path, layout):
    store.write_models(tmp_path / "a.parquet", make_models(layout, [0, 1]), layout, {})
    store.write_models(tmp_path / "b.parquet", make_models(layout, [1, 2]), layout, {})
    with pytest.raises(store.StoreError, match=r"b\.parquet.*model id 1.*a\.parquet"):
        store.aggregate([tmp_path / "a.parquet", tmp_path / "b.parquet"], layout, range(3))


def test_missing_models_are_an_error(tmp_path, layout):
    store.write_models(tmp_path / "a.parquet", make_models(layout, [0, 1]), layout, {})
    with pytest.raises(store.StoreError, match="missing"):
        store.aggregate([tmp_path / "a.parquet"], layout, range(3))


def test_truncated_file_is_named(tmp_path, layout):
    path = tmp_path / "chunk-7.parquet"
    store.write_models(path, make_models(layout, [0, 1]), layout, {})
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(store.StoreError, match="chunk-7.parquet"):
        store.aggregate([path], layout, range(2))


def test_foreign_parquet_is_named(tmp_path, layout):
    path = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), path)
    with pytest.raises(store.StoreError, match="foreign.parquet.*not a models file"):
        store.read_models(path, layout)


def test_file_from_another_run_is_rejected(tmp_path, layout):
    other = store.Layout(layout.n_train, layout.n_targets, layout.subset_size, "0" * 64)
    store.write_models(tmp_path / "a.parquet", make_models(layout, [0]), other, {})
    with pytest.raises(store.StoreError, match="fingerprint"):
        store.read_models(tmp_path / "a.parquet", layout)


def test_wrong_subset_size_and_unflagged_nan_are_errors(tmp_path, layout):
    models = make_models(layout, [0, 1])
    models.mask[0, :] = True
    store.write_models(tmp_path / "a.parquet", models, layout, {})
    with pytest.raises(store.StoreError, match="wrong size"):
        store.read_models(tmp_path / "a.parquet", layout)
    models = make_models(layout, [0, 1])
    models.margins[1, 2] = np.inf
    store.write_models(tmp_path / "b.parquet", models, layout, {})
    with pytest.raises(store.StoreError, match="not flagged as diverged"):
        store.read_models(tmp_path / "b.parquet", layout)


def test_masks_file_roundtrip(tmp_path):
    mask = np.random.default_rng(0).random((4, 11)) < 0.5
    store.write_masks(tmp_path / "m.parquet", np.arange(4), mask, {"alpha": 0.5})
    ids, back = store.read_masks(tmp_path / "m.parquet")
    np.testing.assert_array_equal(ids, np.arange(4))
    np.testing.assert_array_equal(back, mask)


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            open(tmp, "w").write("partial")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_atomic_output_has_ordinary_permissions(tmp_path):
    import os

    previous = os.umask(0o022)  # a umask that differs from mkstemp's 0o600, so the test can fail
    try:
        with atomic_output(tmp_path / "out.txt") as tmp:
            open(tmp, "w").write("done")
    finally:
        os.umask(previous)
    mask = 0o022
    assert (tmp_path / "out.txt").stat().st_mode & 0o777 == 0o666 & ~mask
