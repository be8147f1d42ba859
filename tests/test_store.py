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


def _aggregate(tmp_path, paths, layout, ids):
    return store.aggregate(paths, layout, ids, tmp_path / "out" / "train.parquet", {"split": "train"})


def test_streaming_aggregate_equals_the_in_memory_merge(tmp_path, layout):
    parts = [make_models(layout, list(range(k, k + 5)), seed=k) for k in (10, 0, 5)]
    parts[1].margins[2, 0], parts[1].diverged[2] = np.nan, True
    paths = []
    for k, part in enumerate(parts):
        paths.append(tmp_path / f"chunk-{k}.parquet")
        store.write_models(paths[-1], part, layout, {})
    result = _aggregate(tmp_path, paths, layout, range(15))
    merged = store.concatenate(parts)
    merged = merged.select(np.argsort(merged.model_id, kind="stable"))
    merged = merged.select(~merged.diverged)
    back = store.read_models(tmp_path / "out" / "train.parquet", layout)
    for field in store.Models.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(back, field), getattr(merged, field))
    assert result.n_models == 14 and result.diverged_ids == [2]
    assert result.mean_target_accuracy == pytest.approx(float(merged.target_accuracy.mean()))
    assert pq.ParquetFile(tmp_path / "out" / "train.parquet").num_row_groups == 3  # one per chunk: streamed
    batches = list(store.iter_models(tmp_path / "out" / "train.parquet", layout, batch_rows=4))
    assert [len(b) for b in batches] == [4, 4, 4, 2]
    np.testing.assert_array_equal(store.concatenate(batches).margins, merged.margins)


def _no_output(tmp_path):
    out = tmp_path / "out"
    return not out.exists() or list(out.iterdir()) == []


def test_duplicate_ids_name_both_files(tmp_path, layout):
    store.write_models(tmp_path / "a.parquet", make_models(layout, [0, 1]), layout, {})
    store.write_models(tmp_path / "b.parquet", make_models(layout, [1, 2]), layout, {})
    with pytest.raises(store.StoreError, match=r"b\.parquet.*model id 1.*a\.parquet"):
        _aggregate(tmp_path, [tmp_path / "a.parquet", tmp_path / "b.parquet"], layout, range(3))
    assert _no_output(tmp_path)


def test_missing_models_are_an_error(tmp_path, layout):
    store.write_models(tmp_path / "a.parquet", make_models(layout, [0, 1]), layout, {})
    with pytest.raises(store.StoreError, match="missing"):
        _aggregate(tmp_path, [tmp_path / "a.parquet"], layout, range(3))
    assert _no_output(tmp_path)


def test_truncated_file_is_named(tmp_path, layout):
    path = tmp_path / "chunk-7.parquet"
    store.write_models(path, make_models(layout, [0, 1]), layout, {})
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(store.StoreError, match="chunk-7.parquet"):
        _aggregate(tmp_path, [path], layout, range(2))
    assert _no_output(tmp_path)


def test_bad_chunk_found_mid_stream_is_named_and_leaves_no_output(tmp_path, layout):
    good, bad = make_models(layout, [0, 1]), make_models(layout, [2, 3])
    bad.mask[1, :] = True  # wrong subset size: only the second pass, which decodes masks, sees it
    store.write_models(tmp_path / "chunk-0.parquet", good, layout, {})
    store.write_models(tmp_path / "chunk-1.parquet", bad, layout, {})
    with pytest.raises(store.StoreError, match="chunk-1.parquet.*wrong size"):
        _aggregate(tmp_path, [tmp_path / "chunk-0.parquet", tmp_path / "chunk-1.parquet"], layout, range(4))
    assert _no_output(tmp_path)


def test_interleaved_chunks_and_all_diverged_are_errors(tmp_path, layout):
    store.write_models(tmp_path / "a.parquet", make_models(layout, [0, 2]), layout, {})
    store.write_models(tmp_path / "b.parquet", make_models(layout, [1, 3]), layout, {})
    with pytest.raises(store.StoreError, match="interleave"):
        _aggregate(tmp_path, [tmp_path / "a.parquet", tmp_path / "b.parquet"], layout, range(4))
    models = make_models(layout, [0, 1])
    models.margins[:] = np.nan
    models.diverged[:] = True
    store.write_models(tmp_path / "c.parquet", models, layout, {})
    with pytest.raises(store.StoreError, match="every one of the 2 models diverged"):
        _aggregate(tmp_path, [tmp_path / "c.parquet"], layout, range(2))
    assert _no_output(tmp_path)


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


def test_training_cost_streamed_through_aggregation_is_the_sum_over_chunks(tmp_path, layout):
    # each chunk records its own measured training cost; aggregation (streamed) carries them, and the cost of a
    # prefix of kept models is every model trained up to it (diverged ones too), a cut chunk charged pro rata
    seconds = {0: (3.0, 1.5), 5: (5.0, 2.5), 10: (7.0, 3.5)}
    paths = []
    for first, (cpu, wall) in seconds.items():
        part = make_models(layout, list(range(first, first + 5)), seed=first)
        if first == 0:
            part.margins[1, 0], part.diverged[1] = np.nan, True
        paths.append(tmp_path / f"chunk-{first}.parquet")
        store.write_models(paths[-1], part, layout, {store.TRAINING_KEY: {"cpu_seconds": cpu, "wall_seconds": wall}})
    result = _aggregate(tmp_path, paths[::-1], layout, range(15))
    direct = [store.file_metadata(p)[store.TRAINING_KEY] for p in paths]
    assert [c["first_id"] for c in result.chunks] == [0, 5, 10] and [c["n_models"] for c in result.chunks] == [5] * 3
    total = store.training_cost(result.chunks)
    assert total["models_trained"] == 15
    assert total["cpu_seconds"] == pytest.approx(sum(d["cpu_seconds"] for d in direct)) == 15.0
    assert total["wall_seconds"] == pytest.approx(sum(d["wall_seconds"] for d in direct))
    # the first 4 kept models are ids 0, 2, 3, 4 (1 diverged): 5 trained, the whole first chunk
    assert store.training_cost(result.chunks, 4, result.diverged_ids) == \
        {"models_trained": 5, "cpu_seconds": 3.0, "wall_seconds": 1.5}
    cut = store.training_cost(result.chunks, 6, result.diverged_ids)  # ids 0..6: chunk 0 and 2/5 of chunk 5
    assert cut["models_trained"] == 7 and cut["cpu_seconds"] == pytest.approx(3.0 + 2 / 5 * 5.0)
    with pytest.raises(ValueError, match="15 kept models"):
        store.training_cost(result.chunks, 15, result.diverged_ids)


def test_training_cost_is_unknown_without_a_chunk_measurement(tmp_path, layout):
    paths = [tmp_path / "a.parquet", tmp_path / "b.parquet"]
    store.write_models(paths[0], make_models(layout, [0, 1]), layout, {store.TRAINING_KEY: {"cpu_seconds": 1.0}})
    store.write_models(paths[1], make_models(layout, [2, 3], seed=1), layout, {})  # written before measurements
    result = _aggregate(tmp_path, paths, layout, range(4))
    assert store.training_cost(result.chunks, 2)["cpu_seconds"] == 1.0
    assert store.training_cost(result.chunks)["cpu_seconds"] is None
