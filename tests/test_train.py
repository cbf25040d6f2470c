"""The trainer: recipe checks, learning, per-epoch checkpoints and an exact resume."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn as nn

from lswag import spaces
from lswag.cli import main
from lswag.data import load_dataset
from lswag.errors import LswagError
from lswag.train import Recipe, accuracy, train


def tiny_sets(n_train: int = 256, n_test: int = 128):
    every = load_dataset("digits", "all", image_size=8)
    order = np.random.default_rng(0).permutation(len(every))
    pick = lambda idx: dataclasses.replace(every, images=every.images[idx], labels=every.labels[idx])  # noqa: E731
    return pick(order[:n_train]), pick(order[n_train:n_train + n_test])


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 64, 32), nn.ReLU(), nn.Linear(32, 10))


def test_recipe_defaults_and_errors():
    assert (Recipe().lr, Recipe().weight_decay) == (0.1, 5e-4)
    assert (Recipe(optimizer="adamw").lr, Recipe(optimizer="adamw").weight_decay) == (1e-3, 0.05)
    with pytest.raises(LswagError, match="unknown optimizer 'adam'; valid choices: adamw, sgd"):
        Recipe(optimizer="adam")
    with pytest.raises(LswagError, match="epochs must be a positive integer"):
        Recipe(epochs=0)
    with pytest.raises(LswagError, match="lr must be > 0"):
        Recipe(lr=-1.0)


def test_accuracy_counts_correct_predictions():
    _, test = tiny_sets()

    class Oracle(nn.Module):   # predicts the label of each image, except for the first 10
        def forward(self, x):
            logits = torch.zeros(len(x), 10)
            labels = torch.as_tensor(test.labels[self.offset:self.offset + len(x)])
            wrong = (labels + 1) % 10
            chosen = torch.where(torch.arange(self.offset, self.offset + len(x)) < 10, wrong, labels)
            self.offset += len(x)
            return logits.scatter(1, chosen[:, None], 1.0)
    oracle = Oracle()
    oracle.offset = 0
    assert accuracy(oracle, test, torch.device("cpu"), batch_size=50) == pytest.approx(100 * (128 - 10) / 128)


def test_training_learns_and_an_interrupted_run_resumes_exactly(tmp_path):
    train_set, test_set = tiny_sets()
    recipe = Recipe(epochs=3, batch_size=32, lr=0.05)
    straight = mlp()
    before = accuracy(straight, test_set, torch.device("cpu"))
    result = train(straight, train_set, test_set, recipe, device="cpu", progress=False)
    assert result.epochs == 3 and len(result.train_loss) == 3 and result.train_loss[-1] < result.train_loss[0]
    assert result.test_accuracy > max(before, 60.0)

    class Killed(Exception):
        pass

    class Dying(type(train_set)):   # a run killed during its second epoch
        def batch(self, idx):
            self.calls += 1
            if self.calls > 12:
                raise Killed
            return super().batch(idx)
    dying = Dying(**{f.name: getattr(train_set, f.name) for f in dataclasses.fields(train_set)})
    dying.calls = 0
    checkpoint = tmp_path / "run.pt"
    with pytest.raises(Killed):
        train(mlp(), dying, test_set, recipe, checkpoint=checkpoint, device="cpu", progress=False)
    assert torch.load(checkpoint, weights_only=False)["epoch"] == 1
    resumed_model = mlp()
    resumed = train(resumed_model, train_set, test_set, recipe, checkpoint=checkpoint, device="cpu", progress=False)
    assert resumed.resumed_from == 1 and resumed.epochs == 3
    assert resumed.test_accuracies == result.test_accuracies
    for a, b in zip(resumed_model.state_dict().values(), straight.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)
    with pytest.raises(LswagError, match="written for another run \\(differs in recipe\\)"):
        train(mlp(), train_set, test_set, dataclasses.replace(recipe, lr=0.01), checkpoint=checkpoint,
              device="cpu", progress=False)


def test_augmentation_keeps_shapes_and_changes_images():
    train_set, test_set = tiny_sets(64, 32)
    model = mlp()
    result = train(model, train_set, test_set, Recipe(epochs=1, batch_size=32, augment=True), device="cpu",
                   progress=False)
    assert np.isfinite(result.train_loss[0])


def test_cli_trains_a_search_space_architecture(tmp_path, capsys):
    checkpoint = tmp_path / "cell.pt"
    arch = spaces.get("nb201").format(13714)
    assert main(["train", "--arch", arch, "--build", "C=4", "--build", "N=1", "--image-size", "8", "--epochs", "1",
                 "--checkpoint", str(checkpoint), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and "after 1 epoch (" in out and checkpoint.exists()
    assert main(["train", "--arch", arch, "--build", "C=4", "--build", "N=1", "--image-size", "8", "--epochs", "1",
                 "--checkpoint", str(checkpoint), "--device", "cpu"]) == 0
    assert "resumed after epoch 1" in capsys.readouterr().out
    assert main(["train", "--space", "tnb101_micro", "--arch", "64-41414-1_02_333", "--build", "task=jigsaw"]) == 2
    assert "task=jigsaw needs its task's own inputs and targets" in capsys.readouterr().err
    assert main(["train"]) == 2
    assert "needs --arch" in capsys.readouterr().err
