"""Dataset readers: every supported on-disk layout becomes one in-memory :class:`Dataset`.

``load_dataset(spec)`` accepts:

* ``digits`` -- scikit-learn's bundled 8x8 handwritten digits (no download, always available).
* ``fashion-mnist`` -- Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package,
  installed under :data:`FASHION_MNIST_DEBIAN_DIR`.
* ``KIND:PATH`` with KIND one of ``cifar10``, ``cifar100``, ``mnist``, ``fashion-mnist``,
  ``svhn``, ``folder``.
* a bare ``PATH`` whose layout is detected from the file names it holds.

Images are always returned as uint8 arrays shaped (N, H, W, C); labels as int64 arrays.
Every missing or malformed file raises :class:`onebit.errors.DataError` with a one-line
message that names the file and the layout that was expected.
"""

from __future__ import annotations

import gzip
import pickle
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from onebit.errors import DataError

FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where ``apt-get install dataset-fashion-mnist`` puts the four gzipped IDX files."""

KINDS = ("cifar10", "cifar100", "mnist", "fashion-mnist", "svhn", "folder")

ACCEPTED_FORMS = (
    "digits, fashion-mnist (Debian package dataset-fashion-mnist), "
    "KIND:PATH with KIND one of " + "|".join(KINDS) + ", or a bare PATH whose layout is detected"
)

DIGIT_NAMES = [str(d) for d in range(10)]
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FASHION_MNIST_NAMES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]

CIFAR10_LAYOUT = "expected a CIFAR-10 python folder with data_batch_1..5 and test_batch (batches.meta optional)"
CIFAR100_LAYOUT = "expected a CIFAR-100 python folder with train and test (meta optional)"
IDX_LAYOUT = (
    "expected an MNIST-style folder with train-images-idx3-ubyte, train-labels-idx1-ubyte, "
    "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (each optionally .gz)"
)
SVHN_LAYOUT = "expected an SVHN folder with train_32x32.mat and test_32x32.mat"
FOLDER_LAYOUT = "expected an image folder PATH/train/<class>/*.png|jpg|... and PATH/test/<class>/..."

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
GRAYSCALE_MODES = {"1", "L", "LA"}

IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801


@dataclass
class Dataset:
    """A whole dataset in memory: uint8 images (N, H, W, C) in 0..255 and int64 labels (N,)."""

    name: str
    x_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    x_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    num_classes: int
    class_names: list[str]
    hflip: bool
    """Whether random horizontal flips keep the class (True for objects and clothes, False for digits)."""
    source: str
    """The path(s) read, or ``"sklearn digits"``."""

    def __post_init__(self) -> None:
        check_dataset_consistent(self)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of every image."""
        _, h, w, c = self.x_train.shape
        return (h, w, c)


def check_dataset_consistent(ds: Dataset) -> None:
    """Raise DataError unless images, labels and class names agree with each other."""

    def fail(problem: str) -> None:
        raise DataError(f"{ds.name}: {ds.source}: {problem}")

    for split, x, y in (("train", ds.x_train, ds.y_train), ("test", ds.x_test, ds.y_test)):
        if x.dtype != np.uint8 or x.ndim != 4:
            fail(f"{split} images must be uint8 (N, H, W, C), got {x.dtype} {x.shape}")
        if y.dtype != np.int64 or y.ndim != 1:
            fail(f"{split} labels must be int64 (N,), got {y.dtype} {y.shape}")
        if len(x) != len(y):
            fail(f"{split} has {len(x)} images but {len(y)} labels")
        if len(x) == 0:
            fail(f"{split} split is empty")
        if y.min() < 0 or y.max() >= ds.num_classes:
            fail(f"{split} labels must lie in 0..{ds.num_classes - 1}, found {y.min()}..{y.max()}")
    if ds.x_train.shape[1:] != ds.x_test.shape[1:]:
        fail(f"train images are {ds.x_train.shape[1:]} but test images are {ds.x_test.shape[1:]}")
    if len(ds.class_names) != ds.num_classes:
        fail(f"{len(ds.class_names)} class names for {ds.num_classes} classes")


def describe(error: BaseException) -> str:
    """An exception as ``Type: message`` on one line, for embedding in a DataError."""
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


# --------------------------------------------------------------------------- spec parsing


def load_dataset(spec: str) -> Dataset:
    """Load a dataset from ``digits``, ``fashion-mnist``, ``KIND:PATH`` or a bare ``PATH``."""
    spec = spec.strip()
    if spec == "digits":
        return load_digits()
    if spec == "fashion-mnist":
        return load_debian_fashion_mnist()
    kind, sep, rest = spec.partition(":")
    if sep and kind in KINDS:
        return load_kind(kind, Path(rest).expanduser())
    path = Path(spec).expanduser()
    if spec and path.exists():
        return load_kind(detect_kind(path), path)
    raise DataError(f"unknown dataset {spec!r}: not a known name, KIND:PATH or existing path; accepted forms: {ACCEPTED_FORMS}")


def load_kind(kind: str, path: Path) -> Dataset:
    readers: dict[str, Callable[[Path], Dataset]] = {
        "cifar10": load_cifar10,
        "cifar100": load_cifar100,
        "mnist": lambda p: load_idx_folder(p, name="mnist"),
        "fashion-mnist": lambda p: load_idx_folder(p, name="fashion-mnist"),
        "svhn": load_svhn,
        "folder": load_image_folder,
    }
    if not path.is_dir():
        what = "is not a folder" if path.exists() else "does not exist"
        raise DataError(f"{kind}: {path} {what}; {layout_of(kind)}")
    return readers[kind](path)


def layout_of(kind: str) -> str:
    return {
        "cifar10": CIFAR10_LAYOUT,
        "cifar100": CIFAR100_LAYOUT,
        "mnist": IDX_LAYOUT,
        "fashion-mnist": IDX_LAYOUT,
        "svhn": SVHN_LAYOUT,
        "folder": FOLDER_LAYOUT,
    }[kind]


def detect_kind(path: Path) -> str:
    """Guess the layout of a folder from the files in it.

    MNIST and Fashion-MNIST share one file layout; an IDX folder whose name or parent's name
    mentions "fashion" (``.../fashion-mnist``, torchvision's ``FashionMNIST/raw``) is read as
    Fashion-MNIST, any other as MNIST (use ``fashion-mnist:PATH`` or ``mnist:PATH`` to force it).
    """
    if not path.is_dir():
        raise DataError(f"{path} is not a folder; accepted forms: {ACCEPTED_FORMS}")
    if (path / "cifar-10-batches-py").is_dir() or (path / "data_batch_1").is_file() or (path / "test_batch").is_file():
        return "cifar10"
    if (path / "cifar-100-python").is_dir() or all((path / n).is_file() for n in ("train", "test", "meta")):
        return "cifar100"
    if any((path / f"{stem}{gz}").is_file() for stem in IDX_FILES.values() for gz in ("", ".gz")):
        return "fashion-mnist" if any("fashion" in part.lower() for part in path.resolve().parts[-2:]) else "mnist"
    if (path / "train_32x32.mat").is_file() or (path / "test_32x32.mat").is_file():
        return "svhn"
    if (path / "train").is_dir() and (path / "test").is_dir():
        return "folder"
    raise DataError(f"{path}: cannot tell the dataset layout from its files; accepted forms: {ACCEPTED_FORMS}")


# --------------------------------------------------------------------------- digits


DIGITS_TEST_SIZE = 360
DIGITS_SPLIT_SEED = 0


def load_digits() -> Dataset:
    """scikit-learn's 1797 8x8 digits as a fixed train/test split.

    Pixel values 0..16 become uint8 by round-half-up of v*255/16 (so 8 -> 128, 16 -> 255).
    The split is ``sklearn.model_selection.train_test_split(np.arange(1797), test_size=360,
    stratify=y, random_state=0)``: 1437 training and 360 test images, class proportions kept,
    identical on every call.
    """
    from sklearn.datasets import load_digits as sklearn_load_digits
    from sklearn.model_selection import train_test_split

    digits = sklearn_load_digits()
    images = np.floor(digits.images * (255.0 / 16.0) + 0.5).clip(0, 255).astype(np.uint8)[..., None]
    labels = digits.target.astype(np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=DIGITS_TEST_SIZE, stratify=labels, random_state=DIGITS_SPLIT_SEED
    )
    return Dataset(
        name="digits",
        x_train=images[train_idx],
        y_train=labels[train_idx],
        x_test=images[test_idx],
        y_test=labels[test_idx],
        num_classes=10,
        class_names=list(DIGIT_NAMES),
        hflip=False,
        source="sklearn digits",
    )


# --------------------------------------------------------------------------- CIFAR (pickles)


def _numpy_reconstruct() -> Any:
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 1.26 has no numpy._core
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class ForbiddenPickleGlobal(pickle.UnpicklingError):
    """A pickle refers to a global outside :attr:`RestrictedUnpickler.ALLOWED`."""


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler for CIFAR batches: only numpy arrays may be rebuilt; any other global is refused.

    CIFAR python batches hold dicts, lists, bytes, ints and numpy uint8 arrays, so nothing
    else is needed; refusing every other global blocks pickles that would run code on load.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise ForbiddenPickleGlobal(f"{module}.{name}")
        if name == "_reconstruct":
            return _numpy_reconstruct()
        return getattr(np, name)


def read_cifar_pickle(path: Path, kind: str, layout: str) -> dict[str, Any]:
    """Unpickle one CIFAR file safely into a dict with str keys."""
    if not path.is_file():
        raise DataError(f"{kind}: {path} is missing; {layout}")
    try:
        with path.open("rb") as f:
            obj = RestrictedUnpickler(f, encoding="bytes").load()
    except ForbiddenPickleGlobal as e:
        raise DataError(
            f"{kind}: {path} refers to {e}, which is refused (CIFAR pickles hold only dicts, lists, bytes and numpy arrays)"
        ) from None
    except Exception as e:  # corrupt or truncated pickles fail in many ways: EOFError, UnpicklingError, ValueError...
        raise DataError(f"{kind}: {path} is not a readable pickle ({describe(e)}); {layout}") from None
    if not isinstance(obj, dict):
        raise DataError(f"{kind}: {path} holds a {type(obj).__name__}, not a dict; {layout}")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def cifar_images_and_labels(batch: dict[str, Any], label_key: str, path: Path, kind: str, layout: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, 32, 32, 3) uint8 images and int64 labels from one batch dict (rows are 3072 bytes, CHW)."""
    for key in ("data", label_key):
        if key not in batch:
            raise DataError(f"{kind}: {path} has no {key!r} entry; {layout}")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{kind}: {path}: 'data' must be a uint8 array of shape (N, 3072), got {got}")
    try:
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except (TypeError, ValueError) as e:
        raise DataError(f"{kind}: {path}: {label_key!r} is not a list of integers ({describe(e)})") from None
    if labels.shape != (len(data),):
        raise DataError(f"{kind}: {path} has {len(data)} images but {label_key!r} has shape {labels.shape}")
    images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return images, labels


def decoded_names(names: Any) -> list[str]:
    return [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names]


def check_labels_below(labels: np.ndarray, num_classes: int, path: Path, kind: str) -> None:
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{kind}: {path}: labels must lie in 0..{num_classes - 1}, found {labels.min()}..{labels.max()}")


def load_cifar10(path: Path) -> Dataset:
    if (path / "cifar-10-batches-py").is_dir():
        path = path / "cifar-10-batches-py"
    train_parts = []
    for i in range(1, 6):
        batch_path = path / f"data_batch_{i}"
        batch = read_cifar_pickle(batch_path, "cifar10", CIFAR10_LAYOUT)
        train_parts.append(cifar_images_and_labels(batch, "labels", batch_path, "cifar10", CIFAR10_LAYOUT))
        check_labels_below(train_parts[-1][1], 10, batch_path, "cifar10")
    test_path = path / "test_batch"
    x_test, y_test = cifar_images_and_labels(
        read_cifar_pickle(test_path, "cifar10", CIFAR10_LAYOUT), "labels", test_path, "cifar10", CIFAR10_LAYOUT
    )
    check_labels_below(y_test, 10, test_path, "cifar10")
    return Dataset(
        name="cifar10",
        x_train=np.concatenate([x for x, _ in train_parts]),
        y_train=np.concatenate([y for _, y in train_parts]),
        x_test=x_test,
        y_test=y_test,
        num_classes=10,
        class_names=cifar_label_names(path / "batches.meta", "label_names", 10, "cifar10", CIFAR10_LAYOUT, CIFAR10_NAMES),
        hflip=True,
        source=str(path),
    )


def cifar_label_names(meta_path: Path, key: str, count: int, kind: str, layout: str, default: list[str]) -> list[str]:
    """Class names from a CIFAR meta pickle, or ``default`` when the file is absent."""
    if not meta_path.exists():
        return list(default)
    meta = read_cifar_pickle(meta_path, kind, layout)
    if key not in meta:
        raise DataError(f"{kind}: {meta_path} has no {key!r} entry; {layout}")
    names = decoded_names(meta[key])
    if len(names) != count:
        raise DataError(f"{kind}: {meta_path}: {key!r} lists {len(names)} names, expected {count}")
    return names


def load_cifar100(path: Path) -> Dataset:
    if (path / "cifar-100-python").is_dir():
        path = path / "cifar-100-python"
    splits = {}
    for split in ("train", "test"):
        split_path = path / split
        batch = read_cifar_pickle(split_path, "cifar100", CIFAR100_LAYOUT)
        splits[split] = cifar_images_and_labels(batch, "fine_labels", split_path, "cifar100", CIFAR100_LAYOUT)
        check_labels_below(splits[split][1], 100, split_path, "cifar100")
    default_names = [str(i) for i in range(100)]
    return Dataset(
        name="cifar100",
        x_train=splits["train"][0],
        y_train=splits["train"][1],
        x_test=splits["test"][0],
        y_test=splits["test"][1],
        num_classes=100,
        class_names=cifar_label_names(path / "meta", "fine_label_names", 100, "cifar100", CIFAR100_LAYOUT, default_names),
        hflip=True,
        source=str(path),
    )


# --------------------------------------------------------------------------- MNIST / Fashion-MNIST (IDX)


IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def find_idx_file(folder: Path, stem: str, kind: str) -> Path:
    """The raw IDX file if present, else its .gz twin."""
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(f"{kind}: {folder / stem} (or .gz) is missing; {IDX_LAYOUT}")


def read_file_bytes(path: Path, kind: str) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError; EOFError: truncated .gz
        raise DataError(f"{kind}: {path} cannot be read ({describe(e)})") from None


def parse_idx(raw: bytes, path: Path, kind: str, magic: int, ndim: int) -> np.ndarray:
    """Parse an unsigned-byte IDX file: big-endian magic, ``ndim`` big-endian uint32 sizes, then the data."""
    what = "images" if magic == IDX_IMAGES_MAGIC else "labels"
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise DataError(f"{kind}: {path} is truncated: {len(raw)} bytes, shorter than the {header_len}-byte IDX header")
    found_magic = int.from_bytes(raw[:4], "big")
    if found_magic != magic:
        raise DataError(f"{kind}: {path}: bad IDX magic 0x{found_magic:08x}, expected 0x{magic:08x} ({what})")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header_len + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        problem = "is truncated" if len(raw) < expected else "has trailing bytes"
        raise DataError(
            f"{kind}: {path} {problem}: header says {'x'.join(map(str, dims))} {what} "
            f"({expected} bytes with header), file has {len(raw)} bytes"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(dims)


def read_idx_split(folder: Path, split: str, kind: str) -> tuple[np.ndarray, np.ndarray]:
    images_path = find_idx_file(folder, IDX_FILES[f"{split}_images"], kind)
    labels_path = find_idx_file(folder, IDX_FILES[f"{split}_labels"], kind)
    images = parse_idx(read_file_bytes(images_path, kind), images_path, kind, IDX_IMAGES_MAGIC, 3)
    labels = parse_idx(read_file_bytes(labels_path, kind), labels_path, kind, IDX_LABELS_MAGIC, 1)
    if len(images) != len(labels):
        raise DataError(f"{kind}: {images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels")
    labels = labels.astype(np.int64)
    check_labels_below(labels, 10, labels_path, kind)
    return images[..., None].copy(), labels


def load_idx_folder(path: Path, *, name: str) -> Dataset:
    """MNIST or Fashion-MNIST from the four IDX files (raw or .gz)."""
    x_train, y_train = read_idx_split(path, "train", name)
    x_test, y_test = read_idx_split(path, "test", name)
    fashion = name == "fashion-mnist"
    return Dataset(
        name=name,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        num_classes=10,
        class_names=list(FASHION_MNIST_NAMES if fashion else DIGIT_NAMES),
        hflip=fashion,
        source=str(path),
    )


def load_debian_fashion_mnist() -> Dataset:
    if not FASHION_MNIST_DEBIAN_DIR.is_dir():
        raise DataError(
            f"fashion-mnist: {FASHION_MNIST_DEBIAN_DIR} is missing; install it with "
            "'apt-get install dataset-fashion-mnist' or pass fashion-mnist:PATH to an IDX folder"
        )
    return load_idx_folder(FASHION_MNIST_DEBIAN_DIR, name="fashion-mnist")


# --------------------------------------------------------------------------- SVHN (.mat)


def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(N, 32, 32, 3) uint8 images and int64 labels 0..9 (SVHN stores digit 0 as label 10)."""
    import scipy.io

    if not path.is_file():
        raise DataError(f"svhn: {path} is missing; {SVHN_LAYOUT}")
    try:
        mat = scipy.io.loadmat(path)
    except Exception as e:  # scipy raises ValueError, TypeError, OSError, MatReadError... on bad files
        raise DataError(f"svhn: {path} is not a readable .mat file ({describe(e)})") from None
    if "X" not in mat or "y" not in mat:
        raise DataError(f"svhn: {path} has no 'X' and 'y' variables; {SVHN_LAYOUT}")
    x, y = mat["X"], mat["y"]
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[2] != 3:
        raise DataError(f"svhn: {path}: 'X' must be uint8 of shape (H, W, 3, N), got {x.dtype} {x.shape}")
    y = np.asarray(y).reshape(-1)
    if y.dtype.kind not in "iuf" or (y.dtype.kind == "f" and not np.all(np.isfinite(y) & (y == np.round(y)))):
        raise DataError(f"svhn: {path}: 'y' must hold integer labels 1..10, got {y.dtype} values; {SVHN_LAYOUT}")
    labels = y.astype(np.int64)
    if len(labels) != x.shape[3]:
        raise DataError(f"svhn: {path} holds {x.shape[3]} images but {len(labels)} labels")
    if len(labels) and (labels.min() < 1 or labels.max() > 10):
        raise DataError(f"svhn: {path}: labels must lie in 1..10 (10 means digit 0), found {labels.min()}..{labels.max()}")
    labels[labels == 10] = 0
    return np.ascontiguousarray(x.transpose(3, 0, 1, 2)), labels


def load_svhn(path: Path) -> Dataset:
    x_train, y_train = read_svhn_mat(path / "train_32x32.mat")
    x_test, y_test = read_svhn_mat(path / "test_32x32.mat")
    return Dataset(
        name="svhn",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        num_classes=10,
        class_names=list(DIGIT_NAMES),
        hflip=False,
        source=str(path),
    )


# --------------------------------------------------------------------------- image folders


def list_class_images(split_dir: Path) -> dict[str, list[Path]]:
    """Class name -> sorted image files, for every sub-folder of ``split_dir``."""
    if not split_dir.is_dir():
        raise DataError(f"folder: {split_dir} is missing; {FOLDER_LAYOUT}")
    classes = {}
    for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        files = sorted(p for p in class_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"folder: {class_dir} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); {FOLDER_LAYOUT}")
        classes[class_dir.name] = files
    if not classes:
        raise DataError(f"folder: {split_dir} has no class sub-folders; {FOLDER_LAYOUT}")
    return classes


def image_size_and_mode(path: Path) -> tuple[tuple[int, int], str]:
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.size, img.mode
    except Exception as e:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ValueError...
        raise DataError(f"folder: {path} is not a readable image ({describe(e)})") from None


def decode_image(path: Path, mode: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as img:
            return np.asarray(img.convert(mode), dtype=np.uint8)
    except Exception as e:  # truncated pixel data only shows up when decoding
        raise DataError(f"folder: {path} cannot be decoded ({describe(e)})") from None


def all_same_size_and_grayscale(files: list[Path]) -> bool:
    """Check every image has the size of the first; return whether all of them are grayscale."""
    first_size, first_mode = image_size_and_mode(files[0])
    grayscale = first_mode in GRAYSCALE_MODES
    for f in files[1:]:
        size, mode = image_size_and_mode(f)
        if size != first_size:
            raise DataError(
                f"folder: {f} is {size[0]}x{size[1]} but {files[0]} is {first_size[0]}x{first_size[1]}; "
                "all images must have the same size"
            )
        grayscale = grayscale and mode in GRAYSCALE_MODES
    return grayscale


def load_image_folder(path: Path) -> Dataset:
    """``PATH/train/<class>/*`` and ``PATH/test/<class>/*``; class names sorted, all images one size.

    Images stay at their size (no resizing); they are read as 1-channel grayscale if every
    image is grayscale, otherwise as RGB.
    """
    train = list_class_images(path / "train")
    test = list_class_images(path / "test")
    class_names = sorted(train)
    unknown = sorted(set(test) - set(train))
    if unknown:
        raise DataError(f"folder: {path / 'test' / unknown[0]} is a class with no train/{unknown[0]} folder; {FOLDER_LAYOUT}")
    grayscale = all_same_size_and_grayscale([f for split in (train, test) for c in sorted(split) for f in split[c]])
    mode = "L" if grayscale else "RGB"

    def read_split(split: dict[str, list[Path]]) -> tuple[np.ndarray, np.ndarray]:
        pairs = [(f, class_names.index(c)) for c in sorted(split) for f in split[c]]
        images = np.stack([decode_image(f, mode) for f, _ in pairs])
        if grayscale:
            images = images[..., None]
        return images, np.array([label for _, label in pairs], dtype=np.int64)

    x_train, y_train = read_split(train)
    x_test, y_test = read_split(test)
    return Dataset(
        name=path.name or "folder",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        num_classes=len(class_names),
        class_names=class_names,
        hflip=True,
        source=str(path),
    )
