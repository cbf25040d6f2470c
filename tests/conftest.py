"""Shared test helpers: where the read-only real data of ``../shared`` lives."""
from pathlib import Path

import pytest
import torch

#: ``../shared`` beside the repository: real ground truth and image samples (never copied here)
SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def shared_file(relative: str) -> Path:
    """The path of ``../shared/<relative>``; skips the test, saying which file, when it is absent."""
    path = SHARED / relative
    if not path.is_file():
        pytest.skip(f"real data absent: {path} (the read-only ../shared folder is not beside the repo)")
    return path


def zoo_failures(model, targets, classes: int, batch: int = 6, image_size: int = 32, **kwargs) -> dict[str, str]:
    """``{proxy: reason}`` of the proxies that fail when the whole zoo scores ``model`` on a seeded
    Gaussian batch; ``targets(generator, batch)`` makes the labels. The NTK runs on 4 samples."""
    import torch

    import lswag
    from lswag.data import Batch
    from lswag.proxies import Failure

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, image_size, image_size, generator=generator)
    results = lswag.score(model, Batch(x, targets(generator, batch), classes, "gaussian"), "all",
                          options={"te_ntk_cond": {"samples": 4}}, **kwargs)
    return {name: str(value) for name, value in results.items() if isinstance(value, Failure)}


def class_labels(classes: int):
    """Targets for :func:`zoo_failures`: labels 0, 1, ... cycling through ``classes``."""
    import torch
    return lambda generator, batch: torch.arange(batch) % classes


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch limited to one thread for a module's tests: on a shared 2-core machine its default
    thread pool is up to 50x slower than one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
