"""Dataset readers on small files written in the real on-disk formats, and the augmentation."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from onebit.errors import DataError
from onebit.training import data
from onebit.training.augment import augment, default_cutout, default_shift
from onebit.training.data import Dataset, load_dataset

RNG = np.random.default_rng(0)


# --------------------------------------------------------------------------- writers of real formats


def cifar_rows(n: int) -> np.ndarray:
    return RNG.integers(0, 256, size=(n, 3072), dtype=np.uint8)


def write_pickle(path: Path, obj: object) -> None:
    with path.open("wb") as f:
        pickle.dump(obj, f)


def write_cifar10(folder: Path, per_batch: int = 3, n_test: int = 4, meta: bool = True) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rows, labels = [], []
    for i in range(1, 6):
        batch_rows = cifar_rows(per_batch)
        batch_labels = [int(v) for v in RNG.integers(0, 10, per_batch)]
        write_pickle(
            folder / f"data_batch_{i}",
            {
                b"batch_label": f"training batch {i} of 5".encode(),
                b"labels": batch_labels,
                b"data": batch_rows,
                b"filenames": [f"img{i}_{j}.png".encode() for j in range(per_batch)],
            },
        )
        rows.append(batch_rows)
        labels += batch_labels
    test_rows = cifar_rows(n_test)
    test_labels = [int(v) for v in RNG.integers(0, 10, n_test)]
    write_pickle(
        folder / "test_batch",
        {b"batch_label": b"testing batch 1 of 1", b"labels": test_labels, b"data": test_rows, b"filenames": []},
    )
    if meta:
        names = [f"class{i}".encode() for i in range(10)]
        write_pickle(folder / "batches.meta", {b"num_cases_per_batch": per_batch, b"label_names": names, b"num_vis": 3072})
    return {"train_rows": np.concatenate(rows), "train_labels": np.array(labels), "test_rows": test_rows, "test_labels": np.array(test_labels)}


def write_cifar100(folder: Path, n_train: int = 6, n_test: int = 3) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        rows = cifar_rows(n)
        fine = [int(v) for v in RNG.integers(0, 100, n)]
        write_pickle(
            folder / split,
            {
                b"filenames": [b"x.png"] * n,
                b"batch_label": split.encode(),
                b"fine_labels": fine,
                b"coarse_labels": [v // 5 for v in fine],
                b"data": rows,
            },
        )
        out[f"{split}_rows"], out[f"{split}_labels"] = rows, np.array(fine)
    write_pickle(
        folder / "meta",
        {b"fine_label_names": [f"fine{i}".encode() for i in range(100)], b"coarse_label_names": [b"c"] * 20},
    )
    return out


def idx_bytes(array: np.ndarray) -> bytes:
    magic = 0x00000803 if array.ndim == 3 else 0x00000801
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_folder(folder: Path, gz: bool, n_train: int = 5, n_test: int = 3, side: int = 28) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": RNG.integers(0, 256, (n_train, side, side), dtype=np.uint8),
        "train-labels-idx1-ubyte": RNG.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": RNG.integers(0, 256, (n_test, side, side), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": RNG.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, array in arrays.items():
        if gz:
            with gzip.open(folder / f"{name}.gz", "wb") as f:
                f.write(idx_bytes(array))
        else:
            (folder / name).write_bytes(idx_bytes(array))
    return arrays


def write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


# --------------------------------------------------------------------------- digits


def test_digits_split_sizes_and_format() -> None:
    ds = load_dataset("digits")
    assert isinstance(ds, Dataset)
    assert ds.x_train.shape == (1437, 8, 8, 1) and ds.x_test.shape == (360, 8, 8, 1)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    assert ds.image_shape == (8, 8, 1)
    assert ds.x_train.max() == 255 and ds.x_train.min() == 0
    assert set(np.unique(ds.x_train)) <= {int(np.floor(v * 255 / 16 + 0.5)) for v in range(17)}
    assert ds.num_classes == 10 and ds.class_names == [str(d) for d in range(10)]
    assert ds.hflip is False and ds.source == "sklearn digits"
    counts = np.bincount(ds.y_test, minlength=10)
    assert counts.sum() == 360 and counts.min() >= 35 and counts.max() <= 37  # stratified


def test_digits_split_is_deterministic() -> None:
    a, b = load_dataset("digits"), load_dataset("digits")
    for field in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


# --------------------------------------------------------------------------- CIFAR


def test_cifar10_reads_batches_in_order_with_chw_rows(tmp_path: Path) -> None:
    written = write_cifar10(tmp_path / "c10")
    ds = load_dataset(f"cifar10:{tmp_path / 'c10'}")
    assert ds.x_train.shape == (15, 32, 32, 3) and ds.x_test.shape == (4, 32, 32, 3)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    np.testing.assert_array_equal(ds.y_train, written["train_labels"])
    np.testing.assert_array_equal(ds.y_test, written["test_labels"])
    first = written["train_rows"][0].reshape(3, 32, 32)
    np.testing.assert_array_equal(ds.x_train[0, :, :, 0], first[0])
    np.testing.assert_array_equal(ds.x_train[0, 5, 7], first[:, 5, 7])
    np.testing.assert_array_equal(ds.x_test[3], written["test_rows"][3].reshape(3, 32, 32).transpose(1, 2, 0))
    assert ds.class_names == [f"class{i}" for i in range(10)]
    assert ds.num_classes == 10 and ds.hflip is True


def test_cifar10_detected_from_parent_without_meta(tmp_path: Path) -> None:
    write_cifar10(tmp_path / "cifar-10-batches-py", meta=False)
    ds = load_dataset(str(tmp_path))
    assert ds.name == "cifar10" and ds.x_train.shape[0] == 15
    assert ds.class_names[0] == "airplane" and len(ds.class_names) == 10


def test_cifar100_fine_labels_and_names(tmp_path: Path) -> None:
    written = write_cifar100(tmp_path / "cifar-100-python")
    for spec in (f"cifar100:{tmp_path}", str(tmp_path / "cifar-100-python")):
        ds = load_dataset(spec)
        assert ds.name == "cifar100" and ds.num_classes == 100
        assert ds.x_train.shape == (6, 32, 32, 3) and ds.x_test.shape == (3, 32, 32, 3)
        np.testing.assert_array_equal(ds.y_train, written["train_labels"])
        np.testing.assert_array_equal(ds.x_test[1], written["test_rows"][1].reshape(3, 32, 32).transpose(1, 2, 0))
        assert ds.class_names[:2] == ["fine0", "fine1"] and len(ds.class_names) == 100


def test_cifar10_missing_batch_names_the_file(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3 is missing.*data_batch_1..5 and test_batch"):
        load_dataset(f"cifar10:{tmp_path}")


def test_cifar10_truncated_pickle_is_a_data_error(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    path = tmp_path / "data_batch_2"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match="data_batch_2 is not a readable pickle") as info:
        load_dataset(f"cifar10:{tmp_path}")
    assert "\n" not in str(info.value)


def test_cifar10_garbage_file_is_a_data_error(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    (tmp_path / "test_batch").write_bytes(b"this is not a pickle at all")
    with pytest.raises(DataError, match="test_batch"):
        load_dataset(f"cifar10:{tmp_path}")


def test_cifar10_wrong_row_length_is_a_data_error(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    write_pickle(tmp_path / "data_batch_4", {b"data": np.zeros((3, 1024), np.uint8), b"labels": [0, 1, 2]})
    with pytest.raises(DataError, match=r"data_batch_4.*\(N, 3072\)"):
        load_dataset(f"cifar10:{tmp_path}")


def test_cifar10_label_count_mismatch_is_a_data_error(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    write_pickle(tmp_path / "data_batch_1", {b"data": cifar_rows(3), b"labels": [0, 1]})
    with pytest.raises(DataError, match="data_batch_1 has 3 images"):
        load_dataset(f"cifar10:{tmp_path}")


class RunsShellOnLoad:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 - pickle protocol
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    write_pickle(tmp_path / "data_batch_1", {b"data": RunsShellOnLoad(marker), b"labels": [0]})
    with pytest.raises(DataError, match=r"data_batch_1 refers to .*system.*refused"):
        load_dataset(f"cifar10:{tmp_path}")
    assert not marker.exists()


def test_restricted_unpickler_allows_only_numpy_arrays() -> None:
    import io

    allowed = pickle.dumps({b"a": np.arange(4, dtype=np.uint8), b"b": [1, 2]})
    loaded = data.RestrictedUnpickler(io.BytesIO(allowed), encoding="bytes").load()
    np.testing.assert_array_equal(loaded[b"a"], np.arange(4))
    with pytest.raises(pickle.UnpicklingError):
        data.RestrictedUnpickler(io.BytesIO(pickle.dumps(Path("x"))), encoding="bytes").load()


# --------------------------------------------------------------------------- MNIST / Fashion-MNIST


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_raw_and_gz(tmp_path: Path, gz: bool) -> None:
    arrays = write_idx_folder(tmp_path / "mnist", gz=gz)
    ds = load_dataset(f"mnist:{tmp_path / 'mnist'}")
    assert ds.x_train.shape == (5, 28, 28, 1) and ds.x_test.shape == (3, 28, 28, 1)
    assert ds.x_train.dtype == np.uint8 and ds.y_test.dtype == np.int64
    np.testing.assert_array_equal(ds.x_train[..., 0], arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert ds.hflip is False and ds.class_names[0] == "0"


def test_fashion_mnist_kind_and_detection(tmp_path_factory: pytest.TempPathFactory) -> None:
    fashion = tmp_path_factory.mktemp("plain") / "FashionMNIST" / "raw"  # torchvision's layout
    write_idx_folder(fashion, gz=True)
    for spec in (f"fashion-mnist:{fashion}", str(fashion)):
        ds = load_dataset(spec)
        assert ds.name == "fashion-mnist" and ds.hflip is True
        assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
    mnist = tmp_path_factory.mktemp("plain") / "MNIST" / "raw"
    write_idx_folder(mnist, gz=False)
    assert load_dataset(str(mnist)).name == "mnist"
    assert load_dataset(f"fashion-mnist:{mnist}").name == "fashion-mnist"


def test_idx_bad_magic_names_file(tmp_path: Path) -> None:
    write_idx_folder(tmp_path, gz=True)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    with gzip.open(path, "wb") as f:
        f.write((0x1234).to_bytes(4, "big") + raw[4:])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: bad IDX magic 0x00001234, expected 0x00000803 \(images\)"):
        load_dataset(f"mnist:{tmp_path}")


def test_idx_truncated_names_file(tmp_path: Path) -> None:
    write_idx_folder(tmp_path, gz=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte is truncated"):
        load_dataset(f"mnist:{tmp_path}")


def test_idx_truncated_gzip_stream_names_file(tmp_path: Path) -> None:
    write_idx_folder(tmp_path, gz=True)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:15])
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz cannot be read"):
        load_dataset(f"mnist:{tmp_path}")


def test_idx_count_mismatch_names_both_files(tmp_path: Path) -> None:
    write_idx_folder(tmp_path, gz=False)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(4, np.uint8)))
    with pytest.raises(DataError, match="train-images-idx3-ubyte holds 5 images but .*train-labels-idx1-ubyte holds 4"):
        load_dataset(f"mnist:{tmp_path}")


def test_idx_missing_file_names_it(tmp_path: Path) -> None:
    write_idx_folder(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte \(or .gz\) is missing"):
        load_dataset(f"mnist:{tmp_path}")


def test_debian_fashion_mnist_missing_explains_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "FASHION_MNIST_DEBIAN_DIR", tmp_path / "absent")
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist")


@pytest.mark.skipif(not data.FASHION_MNIST_DEBIAN_DIR.is_dir(), reason="Debian dataset-fashion-mnist not installed")
def test_debian_fashion_mnist_loads() -> None:
    ds = load_dataset("fashion-mnist")
    assert ds.x_train.shape == (60000, 28, 28, 1) and ds.x_test.shape == (10000, 28, 28, 1)
    assert np.bincount(ds.y_train).tolist() == [6000] * 10


# --------------------------------------------------------------------------- SVHN


def write_svhn(folder: Path, n_train: int = 4, n_test: int = 3) -> dict[str, np.ndarray]:
    import scipy.io

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = RNG.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = np.array([[10], [1], [9], [10]][:n], dtype=np.uint8)
        scipy.io.savemat(folder / f"{split}_32x32.mat", {"X": x, "y": y})
        out[f"{split}_x"], out[f"{split}_y"] = x, y
    return out


def test_svhn_mat_maps_label_10_to_0(tmp_path: Path) -> None:
    written = write_svhn(tmp_path)
    for spec in (f"svhn:{tmp_path}", str(tmp_path)):
        ds = load_dataset(spec)
        assert ds.name == "svhn" and ds.hflip is False
        assert ds.x_train.shape == (4, 32, 32, 3) and ds.x_train.dtype == np.uint8
        assert ds.y_train.tolist() == [0, 1, 9, 0] and ds.y_test.tolist() == [0, 1, 9]
        np.testing.assert_array_equal(ds.x_test[2], written["test_x"][..., 2])


def test_svhn_corrupt_mat_names_file(tmp_path: Path) -> None:
    write_svhn(tmp_path)
    (tmp_path / "test_32x32.mat").write_bytes(b"MATLAB garbage" * 10)
    with pytest.raises(DataError, match="test_32x32.mat is not a readable .mat file"):
        load_dataset(f"svhn:{tmp_path}")


def test_svhn_missing_mat_names_file(tmp_path: Path) -> None:
    write_svhn(tmp_path)
    (tmp_path / "train_32x32.mat").unlink()
    with pytest.raises(DataError, match="train_32x32.mat is missing"):
        load_dataset(f"svhn:{tmp_path}")


# --------------------------------------------------------------------------- image folders


def test_image_folder_rgb(tmp_path: Path) -> None:
    cat = RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    write_png(tmp_path / "train" / "dog" / "a.png", RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8))
    write_png(tmp_path / "train" / "cat" / "b.png", cat)
    write_png(tmp_path / "train" / "cat" / "a.png", RNG.integers(0, 256, (6, 5), dtype=np.uint8))  # grayscale mixed in
    write_png(tmp_path / "test" / "dog" / "c.png", RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8))
    (tmp_path / "train" / "cat" / "notes.txt").write_text("ignored")
    for spec in (f"folder:{tmp_path}", str(tmp_path)):
        ds = load_dataset(spec)
        assert ds.class_names == ["cat", "dog"] and ds.num_classes == 2
        assert ds.x_train.shape == (3, 6, 5, 3) and ds.x_test.shape == (1, 6, 5, 3)
        assert ds.y_train.tolist() == [0, 0, 1] and ds.y_test.tolist() == [1]
        np.testing.assert_array_equal(ds.x_train[1], cat)  # cat/a.png, cat/b.png, dog/a.png
        assert ds.hflip is True


def test_image_folder_grayscale_kept_single_channel(tmp_path: Path) -> None:
    img = RNG.integers(0, 256, (4, 4), dtype=np.uint8)
    write_png(tmp_path / "train" / "a" / "0.png", img)
    write_png(tmp_path / "train" / "b" / "0.png", img)
    write_png(tmp_path / "test" / "b" / "0.png", img)
    ds = load_dataset(f"folder:{tmp_path}")
    assert ds.image_shape == (4, 4, 1)
    np.testing.assert_array_equal(ds.x_test[0, :, :, 0], img)


def test_image_folder_size_mismatch_names_file(tmp_path: Path) -> None:
    write_png(tmp_path / "train" / "a" / "0.png", np.zeros((4, 4), np.uint8))
    write_png(tmp_path / "train" / "a" / "1.png", np.zeros((4, 4), np.uint8))
    write_png(tmp_path / "test" / "a" / "odd.png", np.zeros((5, 4), np.uint8))
    with pytest.raises(DataError, match=r"odd.png is 4x5 but .*0.png is 4x4"):
        load_dataset(f"folder:{tmp_path}")


def test_image_folder_corrupt_image_names_file(tmp_path: Path) -> None:
    write_png(tmp_path / "train" / "a" / "0.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "test" / "a").mkdir(parents=True)
    (tmp_path / "test" / "a" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="bad.png is not a readable image"):
        load_dataset(f"folder:{tmp_path}")


def test_image_folder_missing_test_split(tmp_path: Path) -> None:
    write_png(tmp_path / "train" / "a" / "0.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(DataError, match="test is missing"):
        load_dataset(f"folder:{tmp_path}")


# --------------------------------------------------------------------------- spec errors


def test_unknown_spec_lists_accepted_forms(tmp_path: Path) -> None:
    for spec in ("imagenet", "", "tiny:/x", str(tmp_path / "nowhere")):
        with pytest.raises(DataError, match="accepted forms: digits, fashion-mnist.*KIND:PATH.*cifar10") as info:
            load_dataset(spec)
        assert "\n" not in str(info.value)


def test_undetectable_folder_and_missing_kind_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot tell the dataset layout"):
        load_dataset(str(tmp_path))
    with pytest.raises(DataError, match=r"cifar10: .*nope does not exist"):
        load_dataset(f"cifar10:{tmp_path / 'nope'}")


# --------------------------------------------------------------------------- augmentation


def batch(n: int = 6, c: int = 3, h: int = 8, w: int = 8) -> torch.Tensor:
    return torch.rand((n, c, h, w), generator=torch.Generator().manual_seed(123))


def test_augment_is_deterministic_given_seed() -> None:
    x = batch()
    a = augment(x, torch.Generator().manual_seed(7), hflip=True, shift=2, cutout=3)
    b = augment(x, torch.Generator().manual_seed(7), hflip=True, shift=2, cutout=3)
    c = augment(x, torch.Generator().manual_seed(8), hflip=True, shift=2, cutout=3)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0


def test_augment_without_any_step_is_identity() -> None:
    x = batch()
    out = augment(x, torch.Generator().manual_seed(0), hflip=False, shift=0, cutout=0)
    assert torch.equal(out, x)


def test_flip_only_flips_some_images_exactly() -> None:
    x = batch(n=32)
    out = augment(x, torch.Generator().manual_seed(1), hflip=True, shift=0, cutout=0)
    flipped = [torch.equal(out[i], x[i].flip(-1)) for i in range(len(x))]
    kept = [torch.equal(out[i], x[i]) for i in range(len(x))]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 0 < sum(flipped) < len(x)


def test_shift_moves_content_and_fills_border_with_noise() -> None:
    x = batch(n=16, h=10, w=10)
    out = augment(x, torch.Generator().manual_seed(2), hflip=False, shift=3, cutout=0)
    for i in range(len(x)):
        matches = [
            (dy, dx)
            for dy in range(-3, 4)
            for dx in range(-3, 4)
            if torch.equal(
                out[i, :, max(dy, 0) : 10 + min(dy, 0), max(dx, 0) : 10 + min(dx, 0)],
                x[i, :, max(-dy, 0) : 10 + min(-dy, 0), max(-dx, 0) : 10 + min(-dx, 0)],
            )
        ]
        assert len(matches) == 1, f"image {i} is not a pure shift of its input"
        dy, dx = matches[0]
        if dy > 0:  # rows uncovered at the top are fresh noise, not copies of the image
            assert not torch.equal(out[i, :, :dy], x[i, :, :dy])


def test_cutout_changes_a_bounded_square() -> None:
    x = torch.full((8, 1, 16, 16), 2.0)  # outside [0, 1) so filled pixels are recognisable
    out = augment(x, torch.Generator().manual_seed(3), hflip=False, shift=0, cutout=5)
    changed = out != x
    assert bool((out[changed] < 1.0).all())
    for i in range(len(x)):
        rows = changed[i, 0].any(dim=1).nonzero().flatten()
        cols = changed[i, 0].any(dim=0).nonzero().flatten()
        assert 1 <= len(rows) <= 5 and 1 <= len(cols) <= 5
        assert int(changed[i].sum()) == len(rows) * len(cols)


def test_defaults_scale_with_image_size() -> None:
    assert default_cutout(32) == 18 and default_shift(32) == 4
    assert default_cutout(64) == 36 and default_shift(64) == 8
    assert default_shift(8) == 1 and default_cutout(28) == 7 and default_cutout(8) == 2
