"""The data sets behind ``data.name``: torchvision's MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-2 read from tiny
files in their real on-disk formats (no download), the user's own .npz and Parquet files, the config checks,
and the presets. The smoke DAG on tiny CIFAR-2 files and on an .npz file run in test_learners.py, where they are
the cnn and logistic learners' runs."""

from __future__ import annotations

import pickle
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torchvision.datasets
import yaml

from datamodels_pipeline import data
from datamodels_pipeline.config import ConfigError, validate

from workflow_helpers import REPO, copy_workflow, planned_jobs, snakemake

PRESETS = ("cifar10", "cifar2", "mnist")


# --- tiny files in torchvision's on-disk formats ------------------------------------------------------------------

def write_idx(path: Path, array: np.ndarray) -> None:
    """An uncompressed idx (SN3) file of uint8 values, the format of MNIST's raw files."""
    header = (0x0800 + array.ndim).to_bytes(4, "big") + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root: Path, folder: str, n_train: int = 30, n_test: int = 12, seed: int = 0) -> dict[str, np.ndarray]:
    """root/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte; returns the arrays written."""
    generator = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        arrays[f"{prefix}_x"] = generator.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        arrays[f"{prefix}_y"] = generator.integers(0, 10, size=n, dtype=np.uint8)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", arrays[f"{prefix}_x"])
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", arrays[f"{prefix}_y"])
    return arrays


def write_cifar(root: Path, per_batch: int = 8, n_test: int = 20, seed: int = 0) -> dict[str, np.ndarray]:
    """root/cifar-10-batches-py/ with data_batch_1..5, test_batch and batches.meta (pickled dicts, CHW rows)."""
    generator = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_x, train_y = [], []
    for b in range(1, 6):
        x = generator.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        y = (np.arange(per_batch) + b) % 10
        train_x.append(x), train_y.append(y)
        (folder / f"data_batch_{b}").write_bytes(pickle.dumps({"data": x, "labels": y.tolist()}))
    test_x = generator.integers(0, 256, size=(n_test, 3072), dtype=np.uint8)
    test_y = np.arange(n_test) % 10
    (folder / "test_batch").write_bytes(pickle.dumps({"data": test_x, "labels": test_y.tolist()}))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}))
    return {"train_x": np.concatenate(train_x), "train_y": np.concatenate(train_y), "test_x": test_x,
            "test_y": test_y}


@pytest.fixture
def no_checksums(monkeypatch: pytest.MonkeyPatch) -> None:
    """torchvision's CIFAR loader checks the real files' md5 sums: here a file only has to exist."""
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: Path(path).is_file())


# --- MNIST and Fashion-MNIST --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "folder"), [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_like_reads_the_official_splits(tmp_path: Path, name: str, folder: str) -> None:
    written = write_mnist(tmp_path, folder)
    source = data.load_torchvision(name, tmp_path, download=False)
    assert source.image_shape == (28, 28)
    assert source.x.shape == (30, 784) and source.x.dtype == np.float32
    assert source.x_test.shape == (12, 784)
    np.testing.assert_array_equal(source.x, written["train_x"].reshape(30, -1) / np.float32(255))
    np.testing.assert_array_equal(source.y, written["train_y"])
    np.testing.assert_array_equal(source.y_test, written["t10k_y"])
    assert source.y.dtype == np.int64 and 0 <= source.x.min() and source.x.max() <= 1


def test_official_splits_give_the_training_set_and_the_test_targets(tmp_path: Path) -> None:
    written = write_mnist(tmp_path, "MNIST")
    prepared = data.prepare("mnist", 20, "both", seed=0, n_test=5, root=tmp_path, download=False)
    assert prepared.n_train == 20 and prepared.n_targets == 25 and prepared.image_shape == (28, 28)
    pool = {row.tobytes() for row in (written["train_x"].reshape(30, -1) / np.float32(255)).astype(np.float32)}
    test = {row.tobytes() for row in (written["t10k_x"].reshape(12, -1) / np.float32(255)).astype(np.float32)}
    assert all(row.tobytes() in pool for row in prepared.x_train)
    test_targets = prepared.x_targets[prepared.target_train_index < 0]
    assert len(test_targets) == 5 and all(row.tobytes() in test for row in test_targets)
    again = data.prepare("mnist", 20, "both", seed=0, n_test=5, root=tmp_path, download=False)
    assert data.fingerprint(again) == data.fingerprint(prepared)
    # The whole training split may be S: the test split is separate.
    assert data.prepare("mnist", 30, "test", seed=1, root=tmp_path, download=False).n_targets == 12
    with pytest.raises(ValueError, match="data.n_train = 31 must be between 1 and the 30 examples of the training"):
        data.prepare("mnist", 31, "test", seed=0, root=tmp_path, download=False)


# --- CIFAR-10 and CIFAR-2 ------------------------------------------------------------------------------------------

def test_cifar10_images_are_channels_first(tmp_path: Path, no_checksums: None) -> None:
    written = write_cifar(tmp_path)
    source = data.load_torchvision("cifar10", tmp_path, download=False)
    assert source.image_shape == (3, 32, 32)
    assert source.x.shape == (40, 3072) and source.x_test.shape == (20, 3072)
    # CIFAR's rows are stored channel by channel (R, G, B planes): the flattened CHW image is the row itself.
    np.testing.assert_array_equal(source.x, written["train_x"] / np.float32(255))
    np.testing.assert_array_equal(source.y, written["train_y"])
    np.testing.assert_array_equal(source.y_test, written["test_y"])


def test_cifar2_keeps_cats_and_dogs_as_0_and_1(tmp_path: Path, no_checksums: None) -> None:
    written = write_cifar(tmp_path)
    source = data.load_torchvision("cifar2", tmp_path, download=False)
    cats_dogs = np.isin(written["train_y"], [3, 5])
    np.testing.assert_array_equal(source.x, written["train_x"][cats_dogs] / np.float32(255))
    np.testing.assert_array_equal(source.y, (written["train_y"][cats_dogs] == 5).astype(np.int64))
    assert set(source.y) == {0, 1} and set(source.y_test) == {0, 1}
    assert len(source.y_test) == int(np.isin(written["test_y"], [3, 5]).sum())
    prepared = data.prepare("cifar2", 6, "test", seed=0, root=tmp_path, download=False)
    assert prepared.n_classes == 2 and prepared.image_shape == (3, 32, 32)


# --- no files, no network -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "folder"), [("mnist", "MNIST/raw"), ("fashion_mnist", "FashionMNIST/raw"),
                                              ("cifar10", "cifar-10-batches-py"), ("cifar2", "cifar-10-batches-py")])
def test_missing_files_say_where_to_put_them(tmp_path: Path, name: str, folder: str) -> None:
    with pytest.raises(data.DataUnavailableError) as error:
        data.prepare(name, 10, "test", seed=0, root=tmp_path / "resources", download=False)
    message = str(error.value)
    assert f"{tmp_path / 'resources' / folder}/" in message
    assert "data.download: false" in message and "data.root" in message
    assert ("data_batch_1" if "cifar" in name else "train-images-idx3-ubyte") in message


def test_failed_download_is_the_same_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(self: object) -> None:
        raise URLError("no network")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)
    with pytest.raises(data.DataUnavailableError, match="the download failed .*no network.*MNIST/raw/"):
        data.load_torchvision("mnist", tmp_path, download=True)


# --- your own data: .npz and Parquet -------------------------------------------------------------------------------

def own_arrays(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    generator = np.random.default_rng(seed)
    x = generator.random((n, 2, 4, 4), dtype=np.float32)
    y = np.arange(n) % 3
    split = (np.arange(n) % 4 == 0).astype(np.int64)  # every fourth example is a test example
    return x, y, split


def test_npz_with_a_split(tmp_path: Path) -> None:
    x, y, split = own_arrays()
    np.savez(tmp_path / "mine.npz", x=x, y=y, split=split)
    source = data.load_file(tmp_path / "mine.npz")
    assert source.image_shape == (2, 4, 4)
    np.testing.assert_array_equal(source.x, x[split == 0].reshape(-1, 32))
    np.testing.assert_array_equal(source.y_test, y[split == 1])
    prepared = data.prepare("file", 20, "test", seed=0, path=tmp_path / "mine.npz")
    assert prepared.n_train == 20 and prepared.n_targets == 10 and prepared.image_shape == (2, 4, 4)
    assert data.file_split_sizes(tmp_path / "mine.npz") == (30, 10)


def test_npz_without_a_split_is_split_at_random_like_digits(tmp_path: Path) -> None:
    x, y, _ = own_arrays()
    np.savez(tmp_path / "mine.npz", x=x.reshape(40, -1), y=y)
    prepared = data.prepare("file", 30, "test", seed=0, path=tmp_path / "mine.npz", image_shape=[2, 4, 4])
    expected = data.split_dataset(x.reshape(40, -1), y.astype(np.int64), (2, 4, 4), 30, "test", seed=0)
    assert data.fingerprint(prepared) == data.fingerprint(expected)
    assert data.file_split_sizes(tmp_path / "mine.npz") == (40, None)


def test_parquet_feature_columns_and_list_column(tmp_path: Path) -> None:
    x, y, split = own_arrays()
    flat = x.reshape(40, -1)
    columns = {f"f{j}": flat[:, j] for j in range(flat.shape[1])}
    pq.write_table(pa.table({**columns, "label": y, "split": split}), tmp_path / "features.parquet")
    features = data.load_file(tmp_path / "features.parquet")
    assert features.image_shape == (32,)
    np.testing.assert_array_equal(features.x, flat[split == 0])
    np.testing.assert_array_equal(features.y_test, y[split == 1])

    pq.write_table(pa.table({"x": list(flat), "label": y}), tmp_path / "images.parquet")
    images = data.load_file(tmp_path / "images.parquet", image_shape=[2, 4, 4])
    assert images.image_shape == (2, 4, 4) and images.x_test is None
    np.testing.assert_array_equal(images.x, flat)
    assert data.file_split_sizes(tmp_path / "features.parquet") == (30, 10)
    assert data.file_split_sizes(tmp_path / "images.parquet") == (40, None)


@pytest.mark.parametrize(("arrays", "message"), [
    ({"y": np.arange(4)}, "has no array 'x'"),
    ({"x": np.zeros((4, 3))}, "has no array 'y'"),
    ({"x": np.zeros((4, 3)), "y": np.array([0, 1, None, 1], dtype=object)}, "holds Python objects"),
    ({"x": np.zeros((4, 3)), "y": np.array([0.0, 1.0, 0.0, 1.0])}, "labels must be non-negative integers"),
    ({"x": np.zeros((4, 3)), "y": np.arange(3)}, r"labels have shape \(3,\), expected \(4,\)"),
    ({"x": np.zeros((4, 3)), "y": np.arange(4), "split": np.array([0, 1, 2, 0])}, "split must hold one 0"),
])
def test_bad_npz_files_name_the_path_and_the_array(tmp_path: Path, arrays: dict, message: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=message) as error:
        data.load_file(path)
    assert f"data.path = '{path}'" in str(error.value)


def test_bad_files_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file"):
        data.load_file(tmp_path / "missing.npz")
    (tmp_path / "data.csv").write_text("x,label\n")
    with pytest.raises(ValueError, match=r"expected a file ending in \.npz or \.parquet"):
        data.load_file(tmp_path / "data.csv")
    pq.write_table(pa.table({"a": [1.0, 2.0], "target": [0, 1]}), tmp_path / "nolabel.parquet")
    with pytest.raises(ValueError, match="has no column 'label'"):
        data.load_file(tmp_path / "nolabel.parquet")
    pq.write_table(pa.table({"label": [0, 1]}), tmp_path / "nofeatures.parquet")
    with pytest.raises(ValueError, match="no feature columns"):
        data.load_file(tmp_path / "nofeatures.parquet")
    np.savez(tmp_path / "ok.npz", x=np.zeros((4, 6)), y=np.arange(4))
    with pytest.raises(ValueError, match=r"data.image_shape = \[4, 4\] does not hold the 6 values"):
        data.load_file(tmp_path / "ok.npz", image_shape=[4, 4])


# --- the config -----------------------------------------------------------------------------------------------------

def default_config(**data_section: object) -> dict:
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["data"] = {"n_train": 1200, **data_section}
    return config


def test_digits_default_is_unchanged() -> None:
    """The default's prepared arrays are bit-identical to those before the other data sets existed."""
    config = validate(yaml.safe_load((REPO / "config/config.yaml").read_text()))
    assert set(config["data"]) == {"name", "n_train", "n_test", "targets", "plant_duplicates"}
    cfg = config["data"]
    prepared = data.prepare(cfg["name"], cfg["n_train"], cfg["targets"], config["seed"], cfg["n_test"],
                            n_planted=cfg["plant_duplicates"]["n"], plant_noise=cfg["plant_duplicates"]["noise"])
    assert data.fingerprint(prepared) == "626d5afe890757f0af491e6df3ebb3d2547ffbd4a85fe7c986519395a7789795"


def test_torchvision_data_sets_get_root_and_download() -> None:
    config = validate(default_config(name="cifar10"))
    assert config["data"]["root"] == "resources" and config["data"]["download"] is True
    with pytest.raises(ConfigError, match="'data.n_train': 50001 is more than the 50000 examples of the training"):
        validate(default_config(name="cifar10", n_train=50001))
    with pytest.raises(ConfigError, match="'data.name'"):
        validate(default_config(name="svhn"))


@pytest.mark.parametrize(("section", "key"), [
    ({"name": "digits", "root": "elsewhere"}, "data.root"),
    ({"name": "digits", "path": "mine.npz"}, "data.path"),
    ({"name": "mnist", "image_shape": [28, 28]}, "data.image_shape"),
])
def test_data_keys_of_another_data_set_are_errors(section: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=f"'{key}': not used by data.name"):
        validate(default_config(**section))


def test_file_config_needs_an_existing_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'path' is a required property"):
        validate(default_config(name="file"))
    with pytest.raises(ConfigError, match="'data.path': '.*missing.npz' is not a file"):
        validate(default_config(name="file", path=str(tmp_path / "missing.npz")))
    x, y, split = own_arrays(n=2000)
    np.savez(tmp_path / "mine.npz", x=x, y=y, split=split)
    assert validate(default_config(name="file", path=str(tmp_path / "mine.npz")))["data"]["path"].endswith("mine.npz")
    with pytest.raises(ConfigError, match="'data.n_train': 1501 is more than the 1500 examples"):
        validate(default_config(name="file", path=str(tmp_path / "mine.npz"), n_train=1501))
    np.savez(tmp_path / "no_labels.npz", x=x)
    with pytest.raises(ConfigError, match="'data.path': cannot read .*no array 'y'"):
        validate(default_config(name="file", path=str(tmp_path / "no_labels.npz")))


@pytest.mark.parametrize("name", PRESETS)
def test_presets_are_valid_complete_configs(name: str) -> None:
    raw = yaml.safe_load((REPO / f"config/{name}.yaml").read_text())
    config = validate(raw)
    assert config["data"]["name"] == name and config["train"]["device"] == config["fit"]["device"] == "cuda"
    assert set(raw) >= {"run", "seed", "data", "model", "train", "subsets", "fit", "evaluate", "applications"}
    if name.startswith("cifar"):
        assert config["model"]["name"] == "resnet9"
        assert {k: config["train"][k] for k in ("epochs", "batch_size", "lr", "weight_decay", "label_smoothing")} == \
            {"epochs": 24, "batch_size": 512, "lr": 0.5, "weight_decay": 0.0005, "label_smoothing": 0.1}
    if name == "cifar10":
        assert config["subsets"]["alphas"] == [0.1, 0.2, 0.5, 0.75]


@pytest.mark.workflow
@pytest.mark.parametrize("name", PRESETS)
def test_presets_build_their_dag_without_data(tmp_path: Path, name: str) -> None:
    """A dry run of each preset plans every job; it needs no data set and no GPU.

    The model counts are cut (the full CIFAR-10 DAG has about 25,000 jobs) so the test stays short.
    """
    workdir = copy_workflow(tmp_path)
    config = yaml.safe_load((REPO / f"config/{name}.yaml").read_text())
    config["subsets"].update(n_models=4 * config["subsets"]["models_per_chunk"],
                             n_eval_models=config["subsets"]["models_per_chunk"])
    path = workdir / "config" / f"{name}-cut.yaml"
    path.write_text(yaml.safe_dump(config))
    jobs = planned_jobs(snakemake(workdir, "-n", configfile=path))
    n_alphas = len(config["subsets"]["alphas"])
    assert jobs["prepare_data"] == 1 and jobs["train_chunk"] == 5 * n_alphas
    assert not (workdir / "resources").exists() and not (workdir / "results").exists()
