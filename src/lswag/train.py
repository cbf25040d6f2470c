"""``lswag train``: train an architecture with a standard recipe, checkpointed and resumable per epoch.

Recipes (:class:`Recipe`):

* ``sgd`` (CNNs): SGD, momentum 0.9, Nesterov, weight decay 5e-4, learning rate 0.1, cosine to 0
  over the epochs, as NAS-Bench-201 trains its cells (``200E.config``);
* ``adamw`` (ViTs): AdamW, weight decay 0.05, learning rate 1e-3, cosine to 0, as AutoFormer
  (without its warm-up, mixup and label smoothing, which a short CPU run does not need).

The loss is cross-entropy on the labels; ``augment`` adds the CIFAR standard random crop (padding
of 1/8 of the side) and horizontal flip. Each epoch shuffles with a generator seeded by
(``seed``, epoch), so a resumed run draws the same batches as an uninterrupted one. After every
epoch the model, optimiser and schedule are written to the checkpoint (atomically: a run killed
while writing keeps the previous epoch's file); :func:`train` with an existing checkpoint of the
same network and recipe continues after its last epoch. A checkpoint holds tensors and plain data
only, and is read with ``torch.load(weights_only=True)``: a crafted file cannot run code.
"""
from __future__ import annotations

import os
import pickle
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from lswag.data import Dataset
from lswag.errors import LswagError, unknown_choice
from lswag.scoring import resolve_device
from lswag.settings import OPTIMIZERS, about, check_image_size, check_seed

CHECKPOINT_FORMAT = "lswag-checkpoint"
#: optimizer -> (learning rate, weight decay) defaults
_DEFAULTS = {"sgd": (0.1, 5e-4), "adamw": (1e-3, 0.05)}
#: the fewest test images a training run reports an accuracy on (digits and npz hold out a fifth)
MIN_TEST_IMAGES = 10


@dataclass(frozen=True)
class Recipe:
    """How a network is trained; ``lr`` and ``weight_decay`` default to the optimizer's (module docstring)."""

    optimizer: str = "sgd"
    epochs: int = 10
    batch_size: int = 64
    lr: float | None = None
    weight_decay: float | None = None
    augment: bool = False
    seed: int = 0

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise unknown_choice("optimizer", self.optimizer, OPTIMIZERS)
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LswagError(f"{name} must be a positive integer, got {value!r}")
        check_seed(self.seed)
        lr, decay = _DEFAULTS[self.optimizer]
        object.__setattr__(self, "lr", float(lr if self.lr is None else self.lr))
        object.__setattr__(self, "weight_decay", float(decay if self.weight_decay is None else self.weight_decay))
        if not self.lr > 0 or self.weight_decay < 0:
            raise LswagError(f"lr must be > 0 and weight_decay >= 0, got {self.lr} and {self.weight_decay}")


@dataclass
class TrainResult:
    test_accuracy: float                                  # percent, after the last epoch
    epochs: int
    train_loss: list[float] = field(default_factory=list)  # mean loss of each epoch
    test_accuracies: list[float] = field(default_factory=list)
    seconds: float = 0.0                                  # of this call (a resumed run counts its own)
    resumed_from: int = 0                                 # epochs found in the checkpoint


def accuracy(model: nn.Module, data: Dataset, device: torch.device, batch_size: int = 256) -> float:
    """Top-1 accuracy (percent) of ``model`` on every image of ``data``, in eval mode."""
    was_training = model.training
    model.eval()
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(data), batch_size):
            batch = data.batch(list(range(start, min(start + batch_size, len(data)))))
            logits = model(batch.x.to(device))
            correct += int((logits.argmax(dim=1).cpu() == batch.y).sum())
    model.train(was_training)
    return 100.0 * correct / len(data)


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random crop after zero padding of 1/8 of the side, and a horizontal flip, per image."""
    b, _, h, w = x.shape
    pad = max(1, h // 8)
    padded = F.pad(x, (pad, pad, pad, pad))
    tops = torch.randint(0, 2 * pad + 1, (b,), generator=generator).tolist()
    lefts = torch.randint(0, 2 * pad + 1, (b,), generator=generator).tolist()
    flips = (torch.rand(b, generator=generator) < 0.5).tolist()
    out = torch.stack([padded[i, :, t:t + h, l:l + w] for i, (t, l) in enumerate(zip(tops, lefts))])
    return torch.where(torch.tensor(flips).view(b, 1, 1, 1), out.flip(-1), out)


def _optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=0.9, nesterov=True,
                               weight_decay=recipe.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)


def _load_checkpoint(path: Path, identity: dict[str, Any]) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:   # weights_only: tensors and plain data, never a pickled object that would run code
        with warnings.catch_warnings():   # torch's notes on a foreign file's pickle protocol: the error says more
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise LswagError(f"{path} is not an lswag checkpoint: it holds Python objects beyond tensors and plain "
                         "data, which lswag never unpickles (they could run code); choose another --checkpoint"
                         ) from None
    except Exception as error:  # noqa: BLE001 - a truncated or foreign file is a user-input problem
        first_line = (str(error).strip().splitlines() or [""])[0]
        raise LswagError(f"cannot read checkpoint {path}: {type(error).__name__}: {first_line}") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT or "identity" not in state:
        raise LswagError(f"{path} is not an lswag checkpoint; choose another --checkpoint")
    if state["identity"] != identity:
        differing = sorted(k for k in set(identity) | set(state["identity"])
                           if identity.get(k) != state["identity"].get(k))
        raise LswagError(f"checkpoint {path} was written for another run (differs in {', '.join(differing)}); "
                         "remove it or choose another --checkpoint")
    return state


def train(model: nn.Module, train_set: Dataset, test_set: Dataset, recipe: Recipe = Recipe(), *,
          checkpoint: str | Path | None = None, describe: dict[str, Any] | None = None,
          device: str = "auto", progress: bool = True) -> TrainResult:
    """Train ``model`` in place on ``train_set`` and return its accuracy on ``test_set`` per epoch.

    ``describe`` (e.g. the space, arch and build options) is stored in the checkpoint with the
    recipe and the data; a checkpoint of another network, recipe or data is an error, not resumed.
    """
    dev = resolve_device(device)
    identity = {"describe": describe or {}, "recipe": asdict(recipe), "train": train_set.source,
                "test": test_set.source, "image_size": list(train_set.size or ())}
    model.to(dev).train()
    optimizer = _optimizer(model, recipe)
    steps = -(-len(train_set) // recipe.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=recipe.epochs * steps)
    result = TrainResult(test_accuracy=float("nan"), epochs=0)
    path = Path(checkpoint) if checkpoint else None
    state = _load_checkpoint(path, identity) if path else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        result.train_loss, result.test_accuracies = state["train_loss"], state["test_accuracies"]
        result.epochs = result.resumed_from = state["epoch"]
        result.test_accuracy = result.test_accuracies[-1]
    start = time.perf_counter()
    bar = tqdm(total=recipe.epochs, initial=result.epochs, desc="training", unit="epoch", disable=not progress)
    for epoch in range(result.epochs, recipe.epochs):
        generator = torch.Generator().manual_seed(recipe.seed * 100_003 + epoch)
        order = torch.randperm(len(train_set), generator=generator)
        total, seen = 0.0, 0
        for i in range(steps):
            batch = train_set.batch(order[i * recipe.batch_size:(i + 1) * recipe.batch_size].numpy())
            x = _augment(batch.x, generator) if recipe.augment else batch.x
            loss = F.cross_entropy(model(x.to(dev)), batch.y.to(dev))
            if not torch.isfinite(loss):
                raise LswagError(f"the training loss became {loss.item()} in epoch {epoch + 1}; "
                                 f"lower the learning rate (--lr, now {recipe.lr})")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total, seen = total + loss.item() * len(batch), seen + len(batch)
        result.train_loss.append(total / seen)
        result.test_accuracies.append(accuracy(model, test_set, dev))
        result.test_accuracy, result.epochs = result.test_accuracies[-1], epoch + 1
        if path:
            _save(path, {"format": CHECKPOINT_FORMAT, "identity": identity, "epoch": result.epochs,
                         "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "schedule": schedule.state_dict(), "train_loss": result.train_loss,
                         "test_accuracies": result.test_accuracies})
        bar.set_postfix(loss=f"{result.train_loss[-1]:.3f}", test=f"{result.test_accuracy:.2f}%")
        bar.update()
    bar.close()
    result.seconds = time.perf_counter() - start
    return result


def _save(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    torch.save(state, partial)
    os.replace(partial, path)


@dataclass
class TrainedArchitecture:
    space: str
    arch: str                        # canonical text
    build: dict[str, Any]
    recipe: Recipe
    result: TrainResult
    test_images: int


def train_architecture(space_name: str, arch: Any, build: dict[str, Any], *, data: str = "digits",
                       image_size: int | None = None, optimizer: str = "auto", epochs: int = 10, batch_size: int = 64,
                       lr: float | None = None, weight_decay: float | None = None, augment: bool | None = None,
                       seed: int = 0, checkpoint: str | Path | None = None, download: bool = False,
                       device: str = "auto", progress: bool = True) -> TrainedArchitecture:
    """Build ``arch`` of ``space_name`` for ``data`` (its train and test splits at ``image_size``,
    default the space's) and train it (:func:`train`). ``optimizer="auto"`` is the space's
    (:attr:`lswag.spaces.SearchSpace.optimizer`: AdamW for the ViT spaces, SGD otherwise);
    ``augment=None`` is on for CIFAR. Only image classifiers train here: a space whose task needs
    its own inputs and targets (TransNAS-Bench-101's Taskonomy tasks) is an error."""
    from lswag import spaces
    from lswag.data import load_dataset

    space = spaces.get(space_name)
    space.check_build_options(build)
    check_image_size(image_size)
    size = image_size or space.input_shape[1:]
    with about("--data", data):
        train_set = load_dataset(data, "train", image_size=size, download=download)
        test_set = load_dataset(data, "test", image_size=size, download=download)
    if len(test_set) < MIN_TEST_IMAGES:
        raise LswagError(f"--data {data} holds {len(train_set) + len(test_set)} images, too few to train and test on: "
                         f"{len(test_set)} would be held out to test, and lswag train needs at least "
                         f"{MIN_TEST_IMAGES} (a fifth of digits and npz sources is held out)")
    sample = test_set.batch([0])
    if space.task_loss(**build) != "cross_entropy" or space.prepare(sample, **build) is not sample:
        raise LswagError(f"lswag train trains image classifiers on their labels; {space_name} "
                         f"{' '.join(f'{k}={v}' for k, v in build.items())} needs its task's own inputs and targets "
                         "(TransNAS-Bench-101's Taskonomy data), which lswag cannot train on")
    model = space.build(arch, num_classes=train_set.num_classes, seed=seed, **space.sized_build(build, sample.x))
    recipe = Recipe(optimizer=space.optimizer if optimizer == "auto" else optimizer, epochs=epochs,
                    batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                    augment=data.startswith("cifar") if augment is None else augment, seed=seed)
    text = space.format(space.parse(arch) if isinstance(arch, str) else arch)
    result = train(model, train_set, test_set, recipe, checkpoint=checkpoint,
                   describe={"space": space_name, "arch": text, "build": build}, device=device, progress=progress)
    return TrainedArchitecture(space_name, text, build, recipe, result, len(test_set))
