"""Parquet storage of trained models: one row per model.

A row holds the model id, its subset (bit-packed), its correct-class margin on
every target, and its accuracies. File-level metadata records the data set's
fingerprint and shapes so that aggregation can reject chunks that belong to a
different run, instead of silently mixing them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .atomic import atomic_output
from .masks import pack, subset_size, unpack

FORMAT = "datamodels-pipeline/models/1"
METADATA_KEY = b"datamodels_pipeline"


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
    if models.mask.shape[1] != layout.n_train or models.margins.shape[1] != layout.n_targets:
        raise StoreError(f"{path}: arrays do not match the layout {layout}")
    packed = pack(models.mask)
    columns = [
        pa.array(models.model_id.astype(np.int64)),
        pa.FixedSizeBinaryArray.from_buffers(pa.binary(layout.mask_bytes), len(models), [None, pa.py_buffer(packed.tobytes())]),
        pa.FixedSizeListArray.from_arrays(pa.array(models.margins.astype(np.float32).ravel()), layout.n_targets),
        pa.array(models.train_accuracy.astype(np.float32)),
        pa.array(models.target_accuracy.astype(np.float32)),
        pa.array(models.diverged.astype(bool)),
    ]
    table = pa.Table.from_arrays(columns, schema=schema(layout, metadata))
    with atomic_output(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


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


def read_models(path: str | Path, layout: Layout) -> Models:
    """Read and check one models file against the expected layout."""
    metadata = file_metadata(path)
    for key, expected in layout.__dict__.items():
        if metadata.get(key) != expected:
            raise StoreError(f"{path}: {key} is {metadata.get(key)!r}, expected {expected!r} (a file from another run?)")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as error:
        raise StoreError(f"{path}: not a readable Parquet file ({error})") from error
    n = table.num_rows
    masks = table.column("mask").combine_chunks()
    if masks.type.byte_width != layout.mask_bytes:
        raise StoreError(f"{path}: mask has {masks.type.byte_width} bytes, expected {layout.mask_bytes}")
    packed = np.frombuffer(masks.buffers()[1], dtype=np.uint8)[masks.offset * layout.mask_bytes:][: n * layout.mask_bytes]
    margins = table.column("margins").combine_chunks()
    models = Models(
        model_id=table.column("model_id").to_numpy(),
        mask=unpack(packed.reshape(n, layout.mask_bytes), layout.n_train),
        margins=margins.flatten().to_numpy().reshape(n, layout.n_targets),
        train_accuracy=table.column("train_accuracy").to_numpy(),
        target_accuracy=table.column("target_accuracy").to_numpy(),
        diverged=table.column("diverged").to_numpy(),
    )
    sizes = models.mask.sum(axis=1)
    if (sizes != layout.subset_size).any():
        bad = models.model_id[sizes != layout.subset_size][:5].tolist()
        raise StoreError(f"{path}: models {bad} have subsets of the wrong size (expected {layout.subset_size})")
    unflagged = ~np.isfinite(models.margins).all(axis=1) & ~models.diverged
    if unflagged.any():
        raise StoreError(f"{path}: models {models.model_id[unflagged][:5].tolist()} have non-finite margins but are not flagged as diverged")
    return models


def concatenate(parts: Sequence[Models]) -> Models:
    """Concatenate decoded model tables (row order kept)."""
    return Models(*(np.concatenate([getattr(p, f) for p in parts]) for f in Models.__dataclass_fields__))


@dataclass
class Aggregate:
    """All models of one (alpha, split) after integrity checks."""

    models: Models       # finite models only, sorted by model id
    diverged_ids: list[int]


def aggregate(paths: Sequence[str | Path], layout: Layout, expected_ids: Sequence[int]) -> Aggregate:
    """Read every chunk, check integrity across them, drop diverged models.

    Duplicate ids, missing ids, foreign or truncated files raise StoreError
    naming the file; diverged models are counted, never averaged in.
    """
    parts, owner = [], {}
    for path in paths:
        part = read_models(path, layout)
        for model_id in part.model_id.tolist():
            if model_id in owner:
                raise StoreError(f"{path}: model id {model_id} already appears in {owner[model_id]}")
            owner[model_id] = str(path)
        parts.append(part)
    missing = sorted(set(int(i) for i in expected_ids) - set(owner))
    if missing:
        raise StoreError(f"models {missing[:10]} (of {len(missing)} missing) are in none of the {len(paths)} chunk files")
    extra = sorted(set(owner) - set(int(i) for i in expected_ids))
    if extra:
        raise StoreError(f"{owner[extra[0]]}: model id {extra[0]} is not part of this run's configuration")
    models = concatenate(parts) if parts else None
    models = models.select(np.argsort(models.model_id, kind="stable"))
    diverged = models.model_id[models.diverged].tolist()
    return Aggregate(models=models.select(~models.diverged), diverged_ids=[int(i) for i in diverged])


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
