"""The fixed input batch that zero-cost proxies score a network on: :class:`Batch`, drawn from a
named source by :func:`load_batch`, or made from what a user holds (a tuple, a dict batch, a
DataLoader, a tensor) by :func:`as_batch`.

A source is named by a spec string:

``digits``
    scikit-learn's bundled 8x8 grey digits (1797 images, 10 classes; no download). Pixel values
    0..16 are scaled to 0..1, repeated to 3 channels and upsampled to ``image_size``.
``cifar10:PATH`` / ``cifar100:PATH``
    The test split of CIFAR-10 / CIFAR-100 in torchvision's folder format, read without torchvision:
    PATH is the root holding ``cifar-10-batches-py/test_batch`` (``cifar-100-python/test``) or that
    folder itself. ``download=True`` fetches the official tarball into PATH and checks its md5.
``npz:PATH``
    A ``numpy.savez`` archive with ``x`` (uint8, N x H x W x 3, RGB) and ``y`` (integer labels), the
    format of ``shared/images/*.npz``. ``num_classes`` defaults to ``max(y) + 1``.
``gaussian``
    N(0, 1) images with labels uniform over ``num_classes`` (default 10); no data needed.

Rules, shared by all sources:

* The batch is ``numpy.random.default_rng(seed).choice(N, batch_size, replace=False)`` over the whole
  source of N images, in that order, so the same (spec, batch_size, seed, image_size) always gives
  bit-identical tensors.
* Normalisation is per channel, ``(v - mean) / std`` with ``v`` in 0..1. CIFAR uses the published
  constants; digits and npz use the population mean/std of each channel over the *whole source
  array*, not the batch, so an image's tensor does not depend on which other images were drawn.
* Images are resized with bilinear ``F.interpolate`` (``align_corners=False``; antialiased when
  shrinking) after normalisation; ``image_size=None`` keeps the native size (32 for gaussian).
"""

from __future__ import annotations

import hashlib
import pickle
import shutil
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from lswag.errors import LswagError, unknown_choice
from lswag.settings import SOURCES

__all__ = ["Batch", "Dataset", "SOURCES", "SPLITS", "load_batch", "load_dataset", "as_batch", "INPUT_KEYS",
           "TARGET_KEYS", "UNLABELLED_SEED", "CIFAR_URLS", "CIFAR_MD5"]


# Module constants so that tests can point them at a local file:// tarball.
CIFAR_URLS = {
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
}
CIFAR_MD5 = {
    "cifar10": "c58f30108f718f92721af3b95e74349a",
    "cifar100": "eb9058c3a382ffc7106e4002c42a8d85",
}
_CIFAR_TRAIN_FILES = {"cifar10": tuple(f"data_batch_{i}" for i in range(1, 6)), "cifar100": ("train",)}
# name: (folder, test file, label key, classes, mean, std)
_CIFAR = {
    "cifar10": ("cifar-10-batches-py", "test_batch", b"labels", 10,
                (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ("cifar-100-python", "test", b"fine_labels", 100,
                 (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


@dataclass(frozen=True, eq=False)
class Batch:
    """A labelled image batch: ``x`` float32 (B, 3, H, W), normalised; ``y`` int64 (B,)."""

    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    source: str

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def split(self, m: int) -> list[Batch]:
        """``m`` nearly equal consecutive chunks (``torch.tensor_split``)."""
        if not isinstance(m, int) or not 1 <= m <= len(self):
            raise LswagError(f"cannot split a batch of {len(self)} into {m!r} chunks; "
                             f"choose 1..{len(self)}")
        return [Batch(x, y, self.num_classes, self.source)
                for x, y in zip(torch.tensor_split(self.x, m), torch.tensor_split(self.y, m))]

    def head(self, n: int) -> Batch:
        """The first ``n`` examples (the whole batch when it is not larger)."""
        return self if n >= len(self) else Batch(self.x[:n], self.y[:n], self.num_classes, self.source)


#: the keys a dict batch may hold its inputs under (torchvision-style, Hugging Face, plain names)
INPUT_KEYS = ("pixel_values", "input_ids", "images", "image", "x", "input", "inputs")
#: the keys a dict batch may hold its targets under
TARGET_KEYS = ("labels", "label", "y", "targets", "target")
#: the seed of the labels drawn for inputs given without targets
UNLABELLED_SEED = 0
#: the integer input types a network's embedding takes as token ids
TOKEN_DTYPES = (torch.int64, torch.int32)


def as_batch(data: Any, *, num_classes: int | None = None, classes_of: Callable[[torch.Tensor], int] | None = None,
             class_labels: bool = True, float_dtype: torch.dtype | None = None) -> Batch:
    """The checked :class:`Batch` of what a user holds: what :func:`lswag.evaluate` does first with its data.

    ``data`` is one of

    * a :class:`Batch`, returned as it is (integer labels of another type cast to int64);
    * an ``(x, y)`` tuple or list (a DataLoader's batch), or ``(x,)``;
    * a mapping (a DataLoader's dict batch, Hugging Face's ``BatchEncoding``) with the inputs under
      one of :data:`INPUT_KEYS` and the targets, if any, under one of :data:`TARGET_KEYS`; other
      keys (an attention mask) are ignored: the model is called with the inputs alone;
    * a ``torch.utils.data.DataLoader``: its first batch (seed its generator for the same batch
      each time);
    * a tensor: the inputs alone.

    Tensors may be numpy arrays. Inputs are floats (of ``float_dtype``, the model's, when given) or
    integer token ids (int64, int32), with a batch axis and at least one more. The number of
    classes is ``num_classes``, else the Batch's, else ``classes_of(x)`` (:func:`lswag.evaluate`
    counts the model's outputs on the first inputs).

    ``class_labels``: the targets feed cross-entropy (the default loss), so they are integer class
    labels in 0..classes−1, one per sample (B,) or per position (B, *the trailing axes of x), or
    class probabilities (B, classes, ...) as floats. Without it (another loss) they are any tensor
    of B rows. Inputs without targets are scored against labels drawn uniformly over the classes
    from a CPU generator seeded with :data:`UNLABELLED_SEED`, as the ``gaussian`` source draws
    its labels: the same for every network of the same width, so that the proxies that read
    the loss compare networks on equal terms; another loss cannot do without targets.

    Everything else is an :class:`LswagError` naming the problem: uint8 images, NaN or infinite
    values, an empty batch, a missing batch axis, negative token ids, float labels, labels outside
    the classes, inputs and targets of different lengths. A Batch is checked alike but for its
    non-finite values, left to the proxies (each fails on them, saying so).
    """
    if isinstance(data, DataLoader):
        data = next(iter(data), None)
        if data is None:
            raise LswagError("the DataLoader yields no batch")
    # a Batch is the probe's own form: its non-finite values are left to the proxies, which fail on them
    refuse_nonfinite = not isinstance(data, Batch)
    if isinstance(data, Batch):
        if num_classes is not None and num_classes != data.num_classes:
            raise LswagError(f"num_classes={num_classes!r} contradicts the Batch's num_classes={data.num_classes}")
        x, y, num_classes, source = data.x, data.y, data.num_classes, data.source
    else:
        x, y, source = _unpacked(data)
    x = _checked_inputs(_tensor(x, "inputs"), float_dtype, refuse_nonfinite)
    y = None if y is None else _tensor(y, "targets")
    if y is not None and (y.dim() == 0 or len(y) != len(x)):
        raise LswagError(f"the inputs hold {len(x)} samples but the targets "
                         + ("are a scalar" if y.dim() == 0 else f"{len(y)}") + "; give one target per sample")
    if y is None and not class_labels:
        raise LswagError("no targets given, and the loss given needs them: pass (x, y)")
    if not class_labels and refuse_nonfinite:
        _check_finite(y, "targets")
    _check_classes(num_classes)
    classes = f"num_classes={num_classes}"
    if num_classes is None:
        if classes_of is None:
            raise LswagError("the number of classes is unknown: pass num_classes=")
        num_classes = classes_of(x)
        classes = f"the model's {num_classes} outputs"
    if y is None:
        generator = torch.Generator().manual_seed(UNLABELLED_SEED)
        y, source = torch.randint(num_classes, (len(x),), generator=generator).to(x.device), f"{source}, random labels"
    elif class_labels:
        y = _checked_labels(y, x, num_classes, classes, refuse_nonfinite)
    if isinstance(data, Batch) and x is data.x and y is data.y:
        return data
    return Batch(x, y, num_classes, source)


def _unpacked(data: Any) -> tuple[Any, Any, str]:
    """(inputs, targets or None, a name of the form) of a tuple, list, mapping or tensor."""
    if isinstance(data, Mapping):
        found = [key for key in INPUT_KEYS if key in data]
        targets = [key for key in TARGET_KEYS if key in data]
        if not found:
            raise LswagError(f"the dict batch holds no inputs under {', '.join(INPUT_KEYS)}; "
                             f"its keys: {', '.join(map(str, data)) or 'none'}")
        if len(found) > 1 or len(targets) > 1:
            clash = found if len(found) > 1 else targets
            raise LswagError(f"the dict batch is ambiguous: it holds {', '.join(clash)}; keep one of them")
        return data[found[0]], data[targets[0]] if targets else None, "dict"
    if isinstance(data, (tuple, list)):
        if not 1 <= len(data) <= 2:
            raise LswagError(f"a batch {type(data).__name__} is (inputs, targets) or (inputs,), "
                             f"got {len(data)} elements")
        return data[0], data[1] if len(data) == 2 else None, type(data).__name__
    if isinstance(data, (torch.Tensor, np.ndarray)):
        return data, None, "tensor"
    raise LswagError(f"cannot score a {type(data).__name__}: give an (x, y) tuple, a dict batch, a DataLoader, "
                     "a tensor of inputs or a lswag.Batch")


def _tensor(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise LswagError(f"the {what} are a numpy array of Python objects; give numbers")
        return torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        raise LswagError(f"the {what} must be a torch.Tensor or a numpy array, got a {type(value).__name__}")
    return value


def _checked_inputs(x: torch.Tensor, float_dtype: torch.dtype | None, refuse_nonfinite: bool) -> torch.Tensor:
    if x.dtype == torch.uint8:
        raise LswagError("the inputs are uint8 (raw pixels?); give floats normalised per channel, "
                         "(x.float() / 255 - mean) / std, or int64 token ids")
    if not x.is_floating_point() and x.dtype not in TOKEN_DTYPES:
        raise LswagError(f"the inputs are {x.dtype}; give floating-point inputs or int64/int32 token ids")
    if x.is_floating_point() and float_dtype is not None and x.dtype != float_dtype:
        raise LswagError(f"the inputs are {x.dtype} but the model computes in {float_dtype}; "
                         f"convert one of them (x.to({float_dtype}) or model.to({x.dtype}))")
    if x.dim() < 2:
        raise LswagError(f"inputs of shape {tuple(x.shape)} lack a batch axis: give (B, ...), "
                         "e.g. x.unsqueeze(0) for one sample")
    if x.numel() == 0:
        raise LswagError(f"the batch is empty: inputs of shape {tuple(x.shape)}")
    if refuse_nonfinite:
        _check_finite(x, "inputs")
    if not x.is_floating_point() and int(x.min()) < 0:
        raise LswagError(f"token ids must be >= 0, the inputs hold {int(x.min())}")
    return x


def _check_finite(t: torch.Tensor, what: str) -> None:
    if t.is_floating_point():
        bad = int((~torch.isfinite(t)).sum())
        if bad:
            raise LswagError(f"the {what} hold {bad} NaN or infinite values (of {t.numel()})")


def _checked_labels(y: torch.Tensor, x: torch.Tensor, num_classes: int, classes: str,
                    refuse_nonfinite: bool) -> torch.Tensor:
    """``y`` as cross-entropy's targets: int64 class labels in 0..num_classes−1 (``classes`` says where that
    number comes from), or finite class probabilities."""
    if y.is_floating_point():
        if y.dim() < 2 or y.shape[1] != num_classes:
            raise LswagError(f"the labels are {y.dtype} of shape {tuple(y.shape)}: cross-entropy takes integer "
                             f"class labels (y.long()) or class probabilities (B, {num_classes}); "
                             "pass loss_fn= for other targets")
        if refuse_nonfinite:
            _check_finite(y, "labels")
        return y
    if y.dtype in (torch.bool, torch.complex64, torch.complex128):
        raise LswagError(f"the labels are {y.dtype}; cross-entropy takes integer class labels (y.long())")
    positions = y.shape[1:]
    if positions and (y.dim() > x.dim() or positions != x.shape[x.dim() - len(positions):]):
        raise LswagError(f"labels of shape {tuple(y.shape)} are neither one per sample ({len(y)},) nor one per "
                         f"position of the inputs {tuple(x.shape)}")
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= num_classes:
        raise LswagError(f"the labels span {low}..{high}, outside 0..{num_classes - 1} of {classes}")
    return y if y.dtype == torch.int64 else y.long()


def load_batch(spec: str = "digits", batch_size: int = 64, seed: int = 0,
               image_size: int | tuple[int, int] | None = 32, num_classes: int | None = None,
               download: bool = False) -> Batch:
    """Draw ``batch_size`` images from the source named by ``spec`` (see the module docstring)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise LswagError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise LswagError(f"seed must be a non-negative integer, got {seed!r}")
    rng = np.random.default_rng(seed)
    if str(spec).strip() == "gaussian":
        _check_classes(num_classes)
        nc = 10 if num_classes is None else num_classes
        h, w = _size(image_size) or (32, 32)
        x = rng.standard_normal((batch_size, 3, h, w), dtype=np.float32)
        y = rng.integers(0, nc, size=batch_size)
        return Batch(torch.from_numpy(x), torch.from_numpy(y.astype(np.int64)), nc, "gaussian")
    images = load_dataset(spec, split="all", image_size=image_size, num_classes=num_classes, download=download)
    if batch_size > len(images):
        raise LswagError(f"batch_size {batch_size} exceeds the {len(images)} images available in {spec!r}")
    return images.batch(rng.choice(len(images), size=batch_size, replace=False))


#: the splits :func:`load_dataset` serves
SPLITS = ("train", "test", "all")
#: share of digits and npz images held out as their test split
TEST_FRACTION = 0.2


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled image set kept as read (uint8 NHWC, or digits' grey N1HW floats in 0..1), with
    the normalisation and size every batch of it gets (the module docstring's rules)."""

    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    size: tuple[int, int] | None
    source: str

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, idx) -> Batch:
        """The images at ``idx``, normalised and resized, as a :class:`Batch`."""
        chosen = self.images[idx]
        if chosen.dtype == np.uint8:                                  # NHWC uint8 -> NCHW 0..1
            x = torch.from_numpy(np.ascontiguousarray(chosen.transpose(0, 3, 1, 2))).float() / 255.0
        else:                                                         # digits: N1HW float64
            x = torch.from_numpy(chosen).float().expand(-1, 3, -1, -1)
        m = torch.tensor(self.mean, dtype=torch.float32).view(1, 3, 1, 1)
        s = torch.tensor(self.std, dtype=torch.float32).view(1, 3, 1, 1)
        x = (x - m) / s
        if self.size is not None and tuple(x.shape[-2:]) != self.size:
            shrink = self.size[0] < x.shape[-2] or self.size[1] < x.shape[-1]
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=shrink)
        y = torch.from_numpy(self.labels[idx].astype(np.int64))
        return Batch(x.contiguous(), y, self.num_classes, self.source)


def load_dataset(spec: str = "digits", split: str = "all", image_size: int | tuple[int, int] | None = 32,
                 num_classes: int | None = None, download: bool = False) -> Dataset:
    """The images of a real source (``digits``, ``cifar10:PATH``, ``cifar100:PATH``, ``npz:PATH``).

    ``split``: CIFAR's official ``train`` (50,000) or ``test`` (10,000) files, ``all`` being the
    test file (what :func:`load_batch` draws from); digits and npz are split by a fixed shuffle
    (``default_rng(0)``), the last :data:`TEST_FRACTION` of it being ``test``. Normalisation
    statistics are those of the whole source, whatever the split.
    """
    spec = str(spec).strip()
    scheme, colon, path = spec.partition(":")
    if scheme not in ("digits", "gaussian", "cifar10", "cifar100", "npz"):
        raise unknown_choice("data source", spec, SOURCES)
    if scheme in ("digits", "gaussian") and colon:
        raise LswagError(f"data source {scheme!r} takes no path (got {spec!r}); valid choices: "
                         f"{', '.join(SOURCES)}")
    if scheme == "gaussian":
        raise LswagError("data source 'gaussian' has no fixed images to train or test on; "
                         "choose digits, cifar10:PATH, cifar100:PATH or npz:PATH")
    if not colon and scheme != "digits" or colon and not path:
        raise LswagError(f"data source {scheme!r} needs a path: {scheme}:PATH")
    if split not in SPLITS:
        raise unknown_choice("data split", split, SPLITS)
    _check_classes(num_classes)
    size = _size(image_size)

    if scheme == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        grey = d.data.reshape(-1, 1, 8, 8) / 16.0                     # float64, 0..1
        images, labels, nc = grey, d.target, 10
        mean, std = [grey.mean()] * 3, [grey.std()] * 3
    elif scheme == "npz":
        images, labels = _read_npz(Path(path).expanduser())
        nc = int(labels.max()) + 1 if num_classes is None else num_classes
        if num_classes is None and labels.min() > labels.max() / 2:   # e.g. 1000..1009: offset ids, not 1010 classes
            raise LswagError(f"the labels of {spec!r} span {labels.min()}..{labels.max()}: as classes 0..{labels.max()}, "
                             f"the {labels.min()} below the smallest would have no image; renumber them from 0")
        mean, std = _channel_stats(images)
    else:
        images, labels = _read_cifar(scheme, Path(path).expanduser(), download, split == "train")
        nc, mean, std = _CIFAR[scheme][3:]

    if num_classes is not None:
        nc = num_classes
    if labels.min() < 0 or labels.max() >= nc:
        raise LswagError(f"labels of {spec!r} span {int(labels.min())}..{int(labels.max())}, "
                         f"outside 0..{nc - 1} for num_classes={nc}")
    if scheme in ("digits", "npz") and split != "all":
        order = np.random.default_rng(0).permutation(len(labels))
        cut = len(labels) - max(1, round(TEST_FRACTION * len(labels)))
        keep = order[:cut] if split == "train" else order[cut:]
        images, labels = images[keep], labels[keep]
    return Dataset(images, labels, nc, tuple(mean), tuple(std), size, spec)


def _check_classes(num_classes) -> None:
    if num_classes is not None and (isinstance(num_classes, bool)
                                    or not isinstance(num_classes, int) or num_classes < 1):
        raise LswagError(f"num_classes must be a positive integer, got {num_classes!r}")


def _size(image_size) -> tuple[int, int] | None:
    if image_size is None:
        return None
    hw = (image_size, image_size) if not isinstance(image_size, (tuple, list)) else tuple(image_size)
    if len(hw) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in hw):
        raise LswagError(f"image_size must be a positive int, an (H, W) pair or None, "
                         f"got {image_size!r}")
    return hw


def _channel_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Exact population mean/std per channel of a uint8 NHWC array, via value histograms."""
    v = np.arange(256, dtype=np.float64) / 255.0
    mean, std = [], []
    for c in range(3):
        counts = np.bincount(images[..., c].ravel(), minlength=256).astype(np.float64)
        mu = float(counts @ v / counts.sum())
        var = float(counts @ (v - mu) ** 2 / counts.sum())
        mean.append(mu)
        std.append(max(var, 1e-12) ** 0.5)                            # constant channel: no /0
    return mean, std


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise LswagError(f"{path} is a folder; give an npz file" if path.is_dir() else f"npz file not found: {path}")
    try:
        f = np.load(path)
    except Exception as e:  # noqa: BLE001 - not a readable (pickle-free) archive
        raise LswagError(f"cannot read {path} as an npz archive: {type(e).__name__}: {e}") from None
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise LswagError(f"{path} is a single .npy array, not an npz archive with 'x' and 'y'")
    with f:
        missing = [k for k in ("x", "y") if k not in f.files]
        if missing:
            raise LswagError(f"{path} lacks key(s) {', '.join(missing)}; expected 'x' "
                             f"(uint8 N x H x W x 3) and 'y' (N integer labels), "
                             f"found {', '.join(f.files) or 'none'}")
        try:
            x, y = f["x"], f["y"]
        except Exception as e:  # noqa: BLE001 - e.g. object arrays needing pickle
            raise LswagError(f"cannot read 'x'/'y' from {path}: {type(e).__name__}: {e}") from None
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise LswagError(f"{path}: 'x' must be uint8 N x H x W x 3, got {x.dtype} "
                         f"{' x '.join(map(str, x.shape))}")
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise LswagError(f"{path}: 'y' must be a 1-D integer array, got {y.dtype} "
                         f"of shape {tuple(y.shape)}")
    if len(x) != len(y) or len(y) == 0:
        raise LswagError(f"{path}: 'x' holds {len(x)} images but 'y' {len(y)} labels")
    return x, y


def _read_cifar(name: str, root: Path, download: bool, train: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The test file of CIFAR-``name`` (or, with ``train``, its training files, concatenated)."""
    folder, test_file, label_key = _CIFAR[name][:3]
    files = _CIFAR_TRAIN_FILES[name] if train else (test_file,)
    parts = []
    for fname in files:
        candidates = (root / folder / fname, root / fname)
        found = next((p for p in candidates if p.is_file()), None)
        if found is None and download:
            _download(name, root)
            found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise LswagError(f"{name} {'training' if train else 'test'} file not found: expected {candidates[0]} "
                             f"(or {candidates[1]}); pass download=True (--download in the CLI) to fetch it")
        try:
            with open(found, "rb") as f:
                d = pickle.load(f, encoding="bytes")
            data = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            labels = np.asarray(d[label_key], dtype=np.int64)
        except Exception as e:  # noqa: BLE001 - any corrupt file is a user-input problem
            raise LswagError(f"cannot read {found} as a {name} batch: {type(e).__name__}: {e}") from None
        if len(data) != len(labels) or len(labels) == 0:
            raise LswagError(f"{found}: {len(data)} images but {len(labels)} labels")
        parts.append((data.transpose(0, 2, 3, 1), labels))                # NHWC like npz
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _download(name: str, root: Path) -> None:
    """Fetch the tarball into ``root``, check its md5 and extract it there."""
    url, md5 = CIFAR_URLS[name], CIFAR_MD5[name]
    root.mkdir(parents=True, exist_ok=True)
    tar_path = root / url.rsplit("/", 1)[-1]
    part = tar_path.with_name(tar_path.name + ".part")
    try:
        with urllib.request.urlopen(url) as r, open(part, "wb") as f:
            shutil.copyfileobj(r, f)
    except (urllib.error.URLError, OSError) as e:
        part.unlink(missing_ok=True)
        raise LswagError(f"could not download {url}: {getattr(e, 'reason', e)}") from None
    h = hashlib.md5()
    with open(part, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    if h.hexdigest() != md5:
        part.unlink()
        raise LswagError(f"md5 of {url} is {h.hexdigest()}, expected {md5}; "
                         f"the download is corrupt, try again")
    part.replace(tar_path)
    try:
        with tarfile.open(tar_path, "r:gz") as tf:
            if hasattr(tarfile, "data_filter"):
                tf.extractall(root, filter="data")
            else:                                                     # Python without filters
                base = root.resolve()
                for m in tf.getmembers():
                    if not (m.isfile() or m.isdir()) or \
                            not (base / m.name).resolve().is_relative_to(base):
                        raise LswagError(f"unsafe member {m.name!r} in {tar_path}")
                tf.extractall(root)
    except (tarfile.TarError, OSError) as e:
        raise LswagError(f"cannot extract {tar_path}: {e}") from None
