"""Parquet storage of trained models: one row per model.

A row holds the model id, its subset (bit-packed), its correct-class margin on
every target, and its accuracies. File-level metadata records the data set's
fingerprint and shapes so that aggregation can reject chunks that belong to a
different run, instead of silently mixing them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .atomic import atomic_output
from .masks import pack, subset_size, unpack

FORMAT = "datamodels-pipeline/models/1"
METADATA_KEY = b"datamodels_pipeline"
TRAINING_KEY = "training"
"""Key of a chunk's own training cost in its metadata: ``{"cpu_seconds", "wall_seconds", "threads", "device"}``
(``time.process_time`` and wall-clock seconds around the chunk's training, measured by the ``train_chunk`` job)."""


class StoreError(ValueError):
    """A models file is unreadable, foreign or inconsistent; the message names the file."""


@dataclass(frozen=True)
class Layout:
    """What every models file of one run and alpha must agree on."""

    n_train: int
    n_targets: int
    subset_size: int
    fingerprint: str

    @property
    def mask_bytes(self) -> int:
        return (self.n_train + 7) // 8


def layout_for(info: dict, alpha: float) -> Layout:
    """The layout every models file of one prepared data set and alpha shares."""
    return Layout(n_train=info["n_train"], n_targets=info["n_targets"],
                  subset_size=subset_size(info["n_train"], alpha), fingerprint=info["fingerprint"])


@dataclass
class Models:
    """Decoded rows of a models file (or of several, concatenated)."""

    model_id: np.ndarray        # int64 [M]
    mask: np.ndarray            # bool [M, n_train]
    margins: np.ndarray         # float32 [M, n_targets]
    train_accuracy: np.ndarray  # float32 [M]
    target_accuracy: np.ndarray  # float32 [M]
    diverged: np.ndarray        # bool [M]

    def __len__(self) -> int:
        return len(self.model_id)

    def select(self, rows: np.ndarray) -> "Models":
        """The models at the given row positions (or boolean selector)."""
        return Models(*(getattr(self, f)[rows] for f in Models.__dataclass_fields__))


def schema(layout: Layout, metadata: dict) -> pa.Schema:
    """Arrow schema of a models file with its metadata attached."""
    return pa.schema(
        [
            ("model_id", pa.int64()),
            ("mask", pa.binary(layout.mask_bytes)),
            ("margins", pa.list_(pa.float32(), layout.n_targets)),
            ("train_accuracy", pa.float32()),
            ("target_accuracy", pa.float32()),
            ("diverged", pa.bool_()),
        ],
        metadata={METADATA_KEY: json.dumps({"format": FORMAT, **metadata, **layout.__dict__}).encode()},
    )


def write_models(path: str | Path, models: Models, layout: Layout, metadata: dict) -> None:
    """Write models as one Parquet file, atomically."""
    with ModelsWriter(path, layout, metadata) as writer:
        writer.write(models)


def file_metadata(path: str | Path) -> dict:
    """The pipeline metadata of a models file; StoreError if absent or unreadable."""
    try:
        raw = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowException) as error:
        raise StoreError(f"{path}: not a readable Parquet file ({error})") from error
    if METADATA_KEY not in raw:
        raise StoreError(f"{path}: not a models file of this pipeline (no '{METADATA_KEY.decode()}' metadata)")
    metadata = json.loads(raw[METADATA_KEY])
    if metadata.get("format") != FORMAT:
        raise StoreError(f"{path}: format {metadata.get('format')!r}, expected {FORMAT!r}")
    return metadata


def check_file(path: str | Path, layout: Layout) -> dict:
    """The metadata of a models file after checking it against the expected layout; StoreError naming the file."""
    metadata = file_metadata(path)
    for key, expected in layout.__dict__.items():
        if metadata.get(key) != expected:
            raise StoreError(f"{path}: {key} is {metadata.get(key)!r}, expected {expected!r} (a file from another run?)")
    return metadata


def _packed(column: pa.Array, n: int, width: int) -> np.ndarray:
    """uint8 [n, width] view of a fixed-size binary column (no copy)."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if column.type.byte_width != width:
        raise ValueError(f"mask has {column.type.byte_width} bytes, expected {width}")
    return np.frombuffer(column.buffers()[1], dtype=np.uint8)[column.offset * width:][: n * width].reshape(n, width)


def _decode(table: pa.Table | pa.RecordBatch, layout: Layout, path: str | Path) -> Models:
    """Decode and check rows of a models file: subset sizes, and non-finite margins flagged as diverged."""
    n = table.num_rows
    try:
        packed = _packed(table.column("mask"), n, layout.mask_bytes)
    except ValueError as error:
        raise StoreError(f"{path}: {error}") from None
    margins = table.column("margins")
    margins = margins.combine_chunks() if isinstance(margins, pa.ChunkedArray) else margins
    models = Models(
        model_id=np.asarray(table.column("model_id").to_numpy()),
        mask=unpack(packed, layout.n_train),
        margins=margins.flatten().to_numpy().reshape(n, layout.n_targets),
        train_accuracy=np.asarray(table.column("train_accuracy").to_numpy()),
        target_accuracy=np.asarray(table.column("target_accuracy").to_numpy()),
        diverged=np.asarray(table.column("diverged").to_numpy(zero_copy_only=False)),
    )
    sizes = models.mask.sum(axis=1)
    if (sizes != layout.subset_size).any():
        bad = models.model_id[sizes != layout.subset_size][:5].tolist()
        raise StoreError(f"{path}: models {bad} have subsets of the wrong size (expected {layout.subset_size})")
    unflagged = ~np.isfinite(models.margins).all(axis=1) & ~models.diverged
    if unflagged.any():
        raise StoreError(f"{path}: models {models.model_id[unflagged][:5].tolist()} have non-finite margins but are not flagged as diverged")
    return models


def read_models(path: str | Path, layout: Layout) -> Models:
    """Read and check one models file against the expected layout (all of it: for chunk-sized files)."""
    check_file(path, layout)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as error:
        raise StoreError(f"{path}: not a readable Parquet file ({error})") from error
    return _decode(table, layout, path)


def iter_models(path: str | Path, layout: Layout, batch_rows: int) -> Iterator[Models]:
    """The models of a file in batches of at most ``batch_rows`` rows, each checked as :func:`read_models` does.

    Memory: one batch, about ``batch_rows * (n_train + 4 n_targets)`` bytes decoded.
    """
    check_file(path, layout)
    try:
        # One row group decoded at a time (no read-ahead of others): memory does not depend on the file's length.
        for batch in pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=max(1, int(batch_rows)),
                                                                          use_threads=False):
            yield _decode(batch, layout, path)
    except (OSError, pa.ArrowException) as error:
        raise StoreError(f"{path}: not a readable Parquet file ({error})") from error


def batch_rows_for(layout: Layout, budget_mb: float = 128, bytes_per_mask_bit: int = 5,
                   bytes_per_output: int = 40) -> int:
    """Rows per batch so that a stage's work on one batch takes about ``budget_mb``.

    The defaults are the statistics pass's: a mask as bool and float32 (5 bytes per bit) and a handful of
    float64 copies of the outputs.
    """
    per_row = bytes_per_mask_bit * layout.n_train + bytes_per_output * layout.n_targets
    return max(1, int(budget_mb * 2**20 // per_row))


def read_ids(path: str | Path, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """(model ids, diverged flags) of a models file, reading only those columns."""
    check_file(path, layout)
    try:
        table = pq.read_table(path, columns=["model_id", "diverged"])
    except (OSError, pa.ArrowException) as error:
        raise StoreError(f"{path}: not a readable Parquet file ({error})") from error
    return table.column("model_id").to_numpy(), table.column("diverged").to_numpy(zero_copy_only=False)


def concatenate(parts: Sequence[Models]) -> Models:
    """Concatenate decoded model tables (row order kept)."""
    return Models(*(np.concatenate([getattr(p, f) for p in parts]) for f in Models.__dataclass_fields__))


class ModelsWriter:
    """Write models to one Parquet file batch by batch (one row group each), atomically.

    Use as a context manager; the file appears under its final name only when the block
    exits without an exception (nothing is left behind otherwise).
    """

    def __init__(self, path: str | Path, layout: Layout, metadata: dict):
        self.path, self.layout, self.schema = path, layout, schema(layout, metadata)
        self.n_rows = 0

    def __enter__(self) -> "ModelsWriter":
        self._atomic = atomic_output(self.path)
        self._writer = pq.ParquetWriter(self._atomic.__enter__(), self.schema, compression="zstd")
        return self

    def write(self, models: Models) -> None:
        if models.mask.shape[1] != self.layout.n_train or models.margins.shape[1] != self.layout.n_targets:
            raise StoreError(f"{self.path}: arrays do not match the layout {self.layout}")
        self._writer.write_table(_table(models, self.layout, self.schema))
        self.n_rows += len(models)

    def __exit__(self, *exc) -> bool:
        self._writer.close()
        return bool(self._atomic.__exit__(*exc))


def _table(models: Models, layout: Layout, table_schema: pa.Schema) -> pa.Table:
    packed = pack(models.mask)
    columns = [
        pa.array(models.model_id.astype(np.int64)),
        pa.FixedSizeBinaryArray.from_buffers(pa.binary(layout.mask_bytes), len(models), [None, pa.py_buffer(packed.tobytes())]),
        pa.FixedSizeListArray.from_arrays(pa.array(models.margins.astype(np.float32).ravel()), layout.n_targets),
        pa.array(models.train_accuracy.astype(np.float32)),
        pa.array(models.target_accuracy.astype(np.float32)),
        pa.array(models.diverged.astype(bool)),
    ]
    return pa.Table.from_arrays(columns, schema=table_schema)


@dataclass
class Aggregate:
    """What aggregation found: models written, models excluded as diverged, mean accuracies of the written ones."""

    n_models: int
    diverged_ids: list[int]
    mean_target_accuracy: float
    mean_train_accuracy: float
    chunks: list[dict] = field(default_factory=list)
    """Per chunk, by model id: ``first_id``, ``last_id``, ``n_models`` (trained, diverged included) and its
    measured ``cpu_seconds`` / ``wall_seconds`` (None for a chunk written without them)."""


def aggregate(paths: Sequence[str | Path], layout: Layout, expected_ids: Sequence[int], output_path: str | Path,
              metadata: dict) -> Aggregate:
    """Check every chunk, then stream them into one file sorted by model id, diverged models dropped.

    A first pass reads only ids: duplicate ids, missing ids, ids foreign to the run, foreign or
    truncated files raise StoreError naming the file before anything is written. The second pass
    holds one chunk at a time; a file found bad there also raises, and no output is left behind.
    Chunk files must hold disjoint id ranges (the pipeline's chunks do).
    """
    owner: dict[int, str] = {}
    spans, diverged = [], []
    for path in paths:
        cost = file_metadata(path).get(TRAINING_KEY) or {}
        ids, flags = read_ids(path, layout)
        for model_id in ids.tolist():
            if model_id in owner:
                raise StoreError(f"{path}: model id {model_id} already appears in {owner[model_id]}")
            owner[model_id] = str(path)
        diverged += ids[flags].tolist()
        if len(ids):
            spans.append((int(ids.min()), int(ids.max()), path, {
                "first_id": int(ids.min()), "last_id": int(ids.max()), "n_models": len(ids),
                "cpu_seconds": cost.get("cpu_seconds"), "wall_seconds": cost.get("wall_seconds")}))
    expected = set(int(i) for i in expected_ids)
    missing = sorted(expected - set(owner))
    if missing:
        raise StoreError(f"models {missing[:10]} (of {len(missing)} missing) are in none of the {len(paths)} chunk files")
    extra = sorted(set(owner) - expected)
    if extra:
        raise StoreError(f"{owner[extra[0]]}: model id {extra[0]} is not part of this run's configuration")
    if len(diverged) == len(owner):
        raise StoreError(f"every one of the {len(owner)} models diverged; nothing to aggregate")
    spans.sort(key=lambda span: span[0])
    for (_, last, before, _), (first, _, after, _) in zip(spans, spans[1:]):
        if first <= last:
            raise StoreError(f"{after}: model ids interleave with those of {before} (chunks hold disjoint id ranges)")
    target_accuracy = train_accuracy = 0.0
    with ModelsWriter(output_path, layout, metadata) as writer:
        for _, _, path, _ in spans:
            part = read_models(path, layout)
            part = part.select(np.argsort(part.model_id, kind="stable"))
            part = part.select(~part.diverged)
            writer.write(part)
            target_accuracy += float(part.target_accuracy.astype(np.float64).sum())
            train_accuracy += float(part.train_accuracy.astype(np.float64).sum())
        n = writer.n_rows
    return Aggregate(n_models=n, diverged_ids=sorted(int(i) for i in diverged),
                     mean_target_accuracy=target_accuracy / n, mean_train_accuracy=train_accuracy / n,
                     chunks=[span[3] for span in spans])


def training_cost(chunks: Sequence[dict], n_models: int | None = None, diverged_ids: Sequence[int] = ()
                  ) -> dict:
    """Measured training cost of an aggregate's first ``n_models`` kept models (all of them: None), from its chunks.

    ``chunks`` are :attr:`Aggregate.chunks` (the aggregate's integrity record keeps them). The aggregate holds
    the non-diverged models sorted by id, and the learning curve's prefixes are its first rows: the prefix of
    ``n`` kept models is every model trained up to the ``n``-th kept id (diverged ones cost too). A chunk's
    models were trained together; one that is cut is charged pro rata of its models. Returns
    ``models_trained``, ``cpu_seconds`` and ``wall_seconds`` (None where a chunk carries no measurement).
    """
    ordered = sorted(chunks, key=lambda c: c["first_id"])
    total = sum(c["n_models"] for c in ordered)
    trained = total
    if n_models is not None:  # ids trained up to the n-th kept one: ids are counted in order, skipping diverged
        kept_needed, trained = int(n_models), 0
        diverged = set(int(i) for i in diverged_ids)
        ids = (i for c in ordered for i in range(c["first_id"], c["last_id"] + 1))
        for model_id in ids:
            if kept_needed == 0:
                break
            trained += 1
            kept_needed -= model_id not in diverged
        if kept_needed:
            raise ValueError(f"{n_models} kept models asked of an aggregate of {total - len(diverged)}")
    out = {"models_trained": trained, "cpu_seconds": 0.0, "wall_seconds": 0.0}
    left = trained
    for chunk in ordered:
        if left <= 0:
            break
        share = min(left, chunk["n_models"]) / chunk["n_models"]
        left -= chunk["n_models"]
        for key in ("cpu_seconds", "wall_seconds"):
            out[key] = None if out[key] is None or chunk.get(key) is None else out[key] + share * chunk[key]
    return out


MASKS_FORMAT = "datamodels-pipeline/masks/1"


def write_masks(path: str | Path, model_ids: np.ndarray, mask: np.ndarray, metadata: dict) -> None:
    """Write the subsets of one chunk (model id + bit-packed mask), atomically."""
    width = (mask.shape[1] + 7) // 8
    table = pa.Table.from_arrays(
        [pa.array(model_ids.astype(np.int64)),
         pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(mask), [None, pa.py_buffer(pack(mask).tobytes())])],
        schema=pa.schema([("model_id", pa.int64()), ("mask", pa.binary(width))], metadata={
            METADATA_KEY: json.dumps({"format": MASKS_FORMAT, "n_train": int(mask.shape[1]), **metadata}).encode()}),
    )
    with atomic_output(path) as tmp:
        pq.write_table(table, tmp)


def read_masks(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(model ids, boolean masks) of a masks file."""
    try:
        table = pq.read_table(path)
        metadata = json.loads((table.schema.metadata or {})[METADATA_KEY])
    except (OSError, KeyError, pa.ArrowException) as error:
        raise StoreError(f"{path}: not a masks file of this pipeline ({error})") from error
    if metadata.get("format") != MASKS_FORMAT:
        raise StoreError(f"{path}: format {metadata.get('format')!r}, expected {MASKS_FORMAT!r}")
    column = table.column("mask").combine_chunks()
    width = column.type.byte_width
    packed = np.frombuffer(column.buffers()[1], dtype=np.uint8)[column.offset * width:][: table.num_rows * width]
    return table.column("model_id").to_numpy(), unpack(packed.reshape(-1, width), metadata["n_train"])
