"""Tests for lswag.data: the fixed input batch (digits, CIFAR folders and download, npz, gaussian)."""

import hashlib
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_file
import torch

from lswag import data
from lswag.data import Batch, load_batch
from lswag.settings import SOURCES
from lswag.errors import LswagError



def _one_line_error(match, *args, loader=load_batch, **kwargs):
    with pytest.raises(LswagError, match=match) as info:
        loader(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


# ---------------------------------------------------------------- digits

def test_digits_shape_dtype_labels():
    b = load_batch("digits", batch_size=16, seed=0)
    assert isinstance(b, Batch) and len(b) == 16
    assert b.x.shape == (16, 3, 32, 32) and b.x.dtype == torch.float32
    assert b.y.shape == (16,) and b.y.dtype == torch.int64
    assert b.num_classes == 10 and b.source == "digits"
    assert int(b.y.min()) >= 0 and int(b.y.max()) <= 9
    assert torch.equal(b.x[:, 0], b.x[:, 1]) and torch.equal(b.x[:, 0], b.x[:, 2])


def test_digits_normalised_over_large_batch():
    x = load_batch("digits", batch_size=1500, seed=1).x
    assert x.mean(dim=(0, 2, 3)).abs().max() < 0.05
    native = load_batch("digits", batch_size=1797, image_size=None).x
    assert native.shape[-2:] == (8, 8)
    assert torch.allclose(native.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-3)


def test_digits_deterministic_and_seed_dependent():
    a, b = load_batch("digits", 32, seed=3), load_batch("digits", 32, seed=3)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    c = load_batch("digits", 32, seed=4)
    assert not torch.equal(a.x, c.x)


def test_image_size_pair():
    assert load_batch("digits", 2, image_size=(16, 24)).x.shape == (2, 3, 16, 24)
    _one_line_error("image_size", "digits", 2, image_size=0)


def test_split():
    b = load_batch("digits", batch_size=9)
    parts = b.split(2)
    assert [len(p) for p in parts] == [5, 4]
    assert torch.equal(torch.cat([p.x for p in parts]), b.x)
    assert torch.equal(torch.cat([p.y for p in parts]), b.y)
    assert all(p.num_classes == 10 and p.source == "digits" for p in parts)
    assert [len(p) for p in b.split(9)] == [1] * 9
    for m in (0, 10):
        with pytest.raises(LswagError, match="split"):
            b.split(m)


# ---------------------------------------------------------------- CIFAR

def _write_cifar(root: Path, name: str, n: int = 6, seed: int = 0) -> dict:
    """A tiny fake test split in the exact pickle format torchvision reads."""
    rng = np.random.default_rng(seed)
    folder, fname, key, nc = {"cifar10": ("cifar-10-batches-py", "test_batch", b"labels", 10),
                              "cifar100": ("cifar-100-python", "test", b"fine_labels", 100)}[name]
    d = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
         key: [int(v) for v in rng.integers(0, nc, n)]}
    (root / folder).mkdir(parents=True)
    with open(root / folder / fname, "wb") as f:
        pickle.dump(d, f)
    return {"data": d[b"data"], "labels": np.array(d[key]), "folder": root / folder}


def _expected(raw, labels, idx, mean, std):
    x = raw[idx].reshape(-1, 3, 32, 32).astype(np.float32) / 255
    x = (x - np.array(mean, np.float32)[:, None, None]) / np.array(std, np.float32)[:, None, None]
    return x, labels[idx]


@pytest.mark.parametrize("name,nc,mean,std", [
    ("cifar10", 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    ("cifar100", 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
])
def test_cifar_folder_both_path_forms(tmp_path, name, nc, mean, std):
    fake = _write_cifar(tmp_path, name)
    b = load_batch(f"{name}:{tmp_path}", batch_size=4, seed=5)
    assert b.num_classes == nc and b.x.shape == (4, 3, 32, 32) and b.source == f"{name}:{tmp_path}"
    idx = np.random.default_rng(5).choice(6, size=4, replace=False)
    ex, ey = _expected(fake["data"], fake["labels"], idx, mean, std)
    assert np.allclose(b.x.numpy(), ex, atol=1e-5)
    assert np.array_equal(b.y.numpy(), ey)
    direct = load_batch(f"{name}:{fake['folder']}", batch_size=4, seed=5)
    assert torch.equal(direct.x, b.x) and torch.equal(direct.y, b.y)


def test_cifar_missing_folder_mentions_download(tmp_path):
    msg = _one_line_error("not found", f"cifar10:{tmp_path}")
    assert "test_batch" in msg and "download=True" in msg and "--download" in msg


def _tarball(tmp_path, name):
    src = tmp_path / "src"
    fake = _write_cifar(src, name, n=5)
    tar = tmp_path / f"{name}-python.tar.gz"
    with tarfile.open(tar, "w:gz") as tf:
        tf.add(fake["folder"], arcname=fake["folder"].name)
    return tar, hashlib.md5(tar.read_bytes()).hexdigest(), fake


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_download_from_file_url(tmp_path, monkeypatch, name):
    tar, md5, fake = _tarball(tmp_path, name)
    monkeypatch.setitem(data.CIFAR_URLS, name, tar.as_uri())
    monkeypatch.setitem(data.CIFAR_MD5, name, md5)
    root = tmp_path / "dl" / "nested"
    b = load_batch(f"{name}:{root}", batch_size=5, seed=0, download=True)
    assert (root / fake["folder"].name).is_dir() and (root / tar.name).is_file()
    assert sorted(b.y.tolist()) == sorted(fake["labels"].tolist())
    # A second call finds the extracted folder and needs no URL.
    monkeypatch.setitem(data.CIFAR_URLS, name, (tmp_path / "absent.tar.gz").as_uri())
    assert torch.equal(load_batch(f"{name}:{root}", 5, download=True).x, b.x)


def test_cifar_download_wrong_md5(tmp_path, monkeypatch):
    tar, _, _ = _tarball(tmp_path, "cifar10")
    monkeypatch.setitem(data.CIFAR_URLS, "cifar10", tar.as_uri())
    root = tmp_path / "dl"
    msg = _one_line_error("md5", f"cifar10:{root}", 2, download=True)
    assert data.CIFAR_MD5["cifar10"] in msg
    assert not any(root.iterdir())                     # the corrupt download was removed


def test_cifar_download_unreachable(tmp_path, monkeypatch):
    monkeypatch.setitem(data.CIFAR_URLS, "cifar10", (tmp_path / "absent.tar.gz").as_uri())
    _one_line_error("could not download", f"cifar10:{tmp_path / 'dl'}", 2, download=True)


# ---------------------------------------------------------------- npz

def test_npz_roundtrip_and_source_stats(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (20, 10, 12, 3), dtype=np.uint8)
    y = rng.integers(0, 7, 20)
    y[0] = 6
    p = tmp_path / "s.npz"
    np.savez(p, x=x, y=y)
    b = load_batch(f"npz:{p}", batch_size=8, seed=2, image_size=None)
    assert b.x.shape == (8, 3, 10, 12) and b.num_classes == 7 and b.source == f"npz:{p}"
    idx = np.random.default_rng(2).choice(20, size=8, replace=False)
    v = x.astype(np.float64) / 255
    ref = (v[idx] - v.mean(axis=(0, 1, 2))) / v.std(axis=(0, 1, 2))
    assert np.allclose(b.x.numpy(), ref.transpose(0, 3, 1, 2), atol=1e-5)
    assert np.array_equal(b.y.numpy(), y[idx])
    # The whole source sets the normalisation: an image's tensor does not depend on the draw.
    whole = load_batch(f"npz:{p}", batch_size=20, seed=9, image_size=None)
    where = {int(i): k for k, i in enumerate(np.random.default_rng(9).choice(20, 20, replace=False))}
    assert torch.equal(whole.x[[where[int(i)] for i in idx]], b.x)
    assert load_batch(f"npz:{p}", 4, image_size=16).x.shape == (4, 3, 16, 16)
    assert load_batch(f"npz:{p}", 4, num_classes=50).num_classes == 50
    _one_line_error("outside", f"npz:{p}", 4, num_classes=5)


@pytest.mark.parametrize("arrays,match", [
    ({"images": np.zeros((2, 4, 4, 3), np.uint8), "y": np.zeros(2, int)}, "lacks key.*x"),
    ({"x": np.zeros((2, 4, 4), np.uint8), "y": np.zeros(2, int)}, "N x H x W x 3"),
    ({"x": np.zeros((2, 4, 4, 1), np.uint8), "y": np.zeros(2, int)}, "N x H x W x 3"),
    ({"x": np.zeros((2, 4, 4, 3), np.float32), "y": np.zeros(2, int)}, "uint8"),
    ({"x": np.zeros((3, 4, 4, 3), np.uint8), "y": np.zeros(2, int)}, "3 images but 'y' 2"),
    ({"x": np.zeros((2, 4, 4, 3), np.uint8), "y": np.zeros(2, float)}, "integer"),
])
def test_npz_bad_contents(tmp_path, arrays, match):
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    _one_line_error(match, f"npz:{p}", 1)


def test_npz_not_an_archive(tmp_path):
    p = tmp_path / "junk.npz"
    p.write_bytes(b"not a zip file at all")
    _one_line_error("cannot read", f"npz:{p}", 1)


@pytest.mark.realdata
def test_real_cifar10_sample_labels_match_file():
    path = shared_file("images/cifar10_sample.npz")
    b = load_batch(f"npz:{path}", batch_size=32, seed=7)
    with np.load(path) as f:
        x, y = f["x"], f["y"]
    idx = np.random.default_rng(7).choice(len(y), size=32, replace=False)
    assert np.array_equal(b.y.numpy(), y[idx]) and b.num_classes == 10
    assert b.x.shape == (32, 3, 32, 32)
    # Undo the source-wide normalisation: the pixels are exactly the chosen images.
    v = x.astype(np.float64) / 255
    mean, std = v.mean(axis=(0, 1, 2)), v.std(axis=(0, 1, 2))
    back = b.x.numpy().transpose(0, 2, 3, 1) * std + mean
    assert np.array_equal(np.rint(back * 255).astype(np.uint8), x[idx])


@pytest.mark.realdata
def test_real_imagenet16_resized_to_32():
    path = shared_file("images/imagenet16_sample.npz")
    b = load_batch(f"npz:{path}", batch_size=16, seed=0, image_size=32)
    assert b.x.shape == (16, 3, 32, 32) and torch.isfinite(b.x).all()
    assert load_batch(f"npz:{path}", 16, seed=0, image_size=None).x.shape == (16, 3, 16, 16)
    assert b.num_classes == 120


# ---------------------------------------------------------------- gaussian and errors

def test_gaussian():
    b = load_batch("gaussian", batch_size=256, seed=0, image_size=8, num_classes=4)
    assert b.x.shape == (256, 3, 8, 8) and b.x.dtype == torch.float32 and b.num_classes == 4
    assert b.y.dtype == torch.int64 and set(b.y.tolist()) == {0, 1, 2, 3}
    assert abs(float(b.x.mean())) < 0.05 and abs(float(b.x.std()) - 1) < 0.05
    assert torch.equal(b.x, load_batch("gaussian", 256, seed=0, image_size=8, num_classes=4).x)
    assert not torch.equal(b.x, load_batch("gaussian", 256, seed=1, image_size=8, num_classes=4).x)
    assert load_batch("gaussian", 2, image_size=None).x.shape == (2, 3, 32, 32)
    assert load_batch("gaussian", 2).num_classes == 10


def test_unknown_scheme_lists_sources():
    msg = _one_line_error("unknown data source", "mnist:/x")
    assert all(s in msg for s in SOURCES)


def test_missing_npz_names_path(tmp_path):
    p = tmp_path / "nope.npz"
    assert str(p) in _one_line_error("not found", f"npz:{p}")


def test_batch_size_too_big_names_both_numbers():
    msg = _one_line_error("exceeds", "digits", batch_size=5000)
    assert "5000" in msg and "1797" in msg


@pytest.mark.parametrize("kwargs,match", [
    ({"spec": "npz"}, "needs a path"),
    ({"spec": "digits:/x"}, "takes no path"),
    ({"batch_size": 0}, "batch_size"),
    ({"seed": -1}, "seed"),
    ({"num_classes": 0}, "num_classes"),
])
def test_argument_errors(kwargs, match):
    _one_line_error(match, **kwargs)


# ---------------------------------------------------------------- training splits

def test_digits_splits_partition_the_source():
    from lswag.data import load_dataset
    train, test, every = (load_dataset("digits", split, image_size=8) for split in ("train", "test", "all"))
    assert (len(train), len(test), len(every)) == (1438, 359, 1797)
    rows = lambda d: {d.images[i].tobytes() + bytes([int(d.labels[i])]) for i in range(len(d))}  # noqa: E731
    assert rows(train) | rows(test) == rows(every) and not rows(train) & rows(test)
    # the batches of a split are normalised with the whole source's statistics
    assert train.mean == every.mean and torch.equal(train.batch([0]).x[0], every.batch(
        [int(np.flatnonzero([(every.images[i] == train.images[0]).all() for i in range(len(every))])[0])]).x[0])


def test_cifar_train_split_reads_every_training_file(tmp_path):
    from lswag.data import load_dataset
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    parts = []
    for i in range(1, 6):
        d = {b"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8), b"labels": [i - 1, i, i + 1]}
        parts.append(d)
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump(d, f)
    train = load_dataset(f"cifar10:{tmp_path}", "train")
    assert len(train) == 15 and train.labels.tolist() == [v for d in parts for v in d[b"labels"]]
    expected, _ = _expected(np.concatenate([d[b"data"] for d in parts]), train.labels, [7],
                            (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    assert np.allclose(train.batch([7]).x.numpy(), expected, atol=1e-5)
    (folder / "data_batch_3").unlink()
    _one_line_error("cifar10 training file not found", f"cifar10:{tmp_path}", "train", loader=load_dataset)
    _one_line_error("unknown data split 'val'", "digits", "val", loader=load_dataset)
    _one_line_error("no fixed images", "gaussian", "train", loader=load_dataset)
