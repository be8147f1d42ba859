"""Other libraries' score matrices for the attribution table (``applications.attribution.external``).

:func:`load_external` reads a ``[n_train, n_targets]`` matrix from ``.npy``,
``.npz`` or Parquet (the datamodels layout) and refuses a wrong shape or
non-finite scores, naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def load_external(path: str | Path, n_train: int, n_targets: int) -> np.ndarray:
    """An external ``[n_train, n_targets]`` score matrix from ``.npy``, ``.npz`` (key ``scores``) or Parquet.

    Parquet: the datamodels layout, one row per target with a fixed-size-list
    column ``weight`` of length n_train (so another run's ``datamodels.parquet``
    works too). ValueError naming the file and the expected shape otherwise.
    """
    path = Path(path)
    expected = f"[n_train x n_targets] = [{n_train} x {n_targets}]"
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            matrix = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                if "scores" not in archive.files:
                    raise ValueError(f"external score file {path}: no array 'scores' (has {archive.files}); "
                                     f"expected one of shape {expected}")
                matrix = archive["scores"]
        elif suffix in (".parquet", ".pq"):
            table = pq.read_table(path)
            if "weight" not in table.column_names:
                raise ValueError(f"external score file {path}: no column 'weight' (has {table.column_names}); "
                                 f"expected one row per target ({n_targets}) with a list of {n_train} weights")
            column = table.column("weight").combine_chunks()
            values = column.flatten().to_numpy(zero_copy_only=False)
            if table.num_rows == 0 or len(values) % table.num_rows:
                raise ValueError(f"external score file {path}: column 'weight' has lists of unequal length; "
                                 f"expected {n_targets} rows of {n_train} weights")
            matrix = values.reshape(table.num_rows, -1).T
        else:
            raise ValueError(f"external score file {path}: unknown suffix {path.suffix!r} "
                             "(use .npy, .npz with key 'scores', or .parquet)")
    except (OSError, pa.ArrowException) as error:
        raise ValueError(f"external score file {path}: cannot be read ({error})") from error
    matrix = np.asarray(matrix)
    if matrix.shape != (n_train, n_targets):
        hint = " (it looks transposed)" if matrix.shape == (n_targets, n_train) else ""
        raise ValueError(f"external score file {path}: shape {list(matrix.shape)}, expected {expected}{hint}")
    if not np.issubdtype(matrix.dtype, np.number) or not np.isfinite(matrix).all():
        raise ValueError(f"external score file {path}: scores must be finite numbers")
    return matrix.astype(np.float32)
