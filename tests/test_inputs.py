"""What lswag.score / lswag.evaluate take: the forms users hold (tuples, dict batches, DataLoaders,
tensors, Batch), the malformed tensors refused with one line, token models, and what `seconds` charges."""

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

import lswag
from lswag.data import UNLABELLED_SEED, Batch, as_batch
from lswag.errors import LswagError
from lswag.probe import Record
from lswag.proxies import Failure
from lswag.scoring import pass_shares

#: cheap proxies reading the labels (grad_norm, snip, epe_nas) and not (nwot, jacov)
PROXIES = ["nwot", "grad_norm", "snip", "jacov", "epe_nas"]
#: the proxies that feed the network their own input or differentiate it with respect to the input
FLOAT_ONLY = {"synflow", "tcet", "zen", "jacov", "epe_nas"}


def conv_net(classes=10):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, classes))


def images(n=16):
    x = torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    return x, torch.arange(n) % 10


def one_line_error(data, match, model=None, **kwargs) -> str:
    with pytest.raises(LswagError, match=match) as info:
        lswag.score(model or conv_net(), data, PROXIES, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


# --------------------------------------------------------------------------- the accepted forms

@pytest.mark.parametrize("form", ["tuple", "list", "pixel_values", "images", "x", "input", "loader batch",
                                  "loader", "numpy", "hugging face"])
def test_every_form_scores_as_the_batch(form):
    x, y = images()
    expected = lswag.score(conv_net(), Batch(x, y, 10, "test"), PROXIES)
    data = {"tuple": (x, y), "list": [x, y], "pixel_values": {"pixel_values": x, "labels": y},
            "images": {"images": x, "label": y}, "x": {"x": x, "y": y}, "input": {"input": x, "targets": y},
            "loader batch": next(iter(DataLoader(TensorDataset(x, y), batch_size=16))),
            "loader": DataLoader(TensorDataset(x, y), batch_size=16),
            "numpy": (x.numpy(), y.numpy().astype(np.uint8)),     # labels of any integer type become int64
            "hugging face": {"pixel_values": x, "labels": y, "pixel_mask": torch.ones(16, 8, 8)}}[form]
    assert lswag.score(conv_net(), data, PROXIES) == expected


def test_a_batch_is_returned_as_it_is():
    x, y = images()
    batch = Batch(x, y, 10, "test")
    assert as_batch(batch) is batch
    assert as_batch((x, y), num_classes=10).num_classes == 10


def test_the_number_of_classes_is_the_width_of_the_output():
    x, y = images()
    assert as_batch((x, y), classes_of=lambda inputs: 12).num_classes == 12
    results = lswag.evaluate(conv_net(classes=7), (x, y % 7), ["nwot"])
    assert isinstance(results[0].value, float)
    message = one_line_error((x, y), "outside 0..6 of the model's 7 outputs", model=conv_net(classes=7))
    assert "span 0..9" in message
    one_line_error((x, y), "outside 0..4 of num_classes=5", num_classes=5)
    with pytest.raises(LswagError, match="unknown: pass num_classes="):
        as_batch((x, y))


def test_inputs_alone_are_scored_against_seeded_random_labels():
    x, _ = images()
    labels = torch.randint(10, (16,), generator=torch.Generator().manual_seed(UNLABELLED_SEED))
    assert lswag.score(conv_net(), x, PROXIES) == lswag.score(conv_net(), (x, labels), PROXIES)
    assert lswag.score(conv_net(), {"pixel_values": x}, PROXIES) == lswag.score(conv_net(), (x,), PROXIES)
    one_line_error(x, "no targets given, and the loss given needs them", loss_fn="mse")


def test_another_loss_takes_any_finite_targets():
    x, _ = images()
    target = torch.randn(16, 10, generator=torch.Generator().manual_seed(3))
    got = lswag.score(conv_net(), (x, target), ["grad_norm"], loss_fn="mse")
    assert isinstance(got["grad_norm"], float)
    target[0, 0] = float("nan")
    one_line_error((x, target), "targets hold 1 NaN", loss_fn="mse")


def test_class_probabilities_and_per_pixel_labels_are_labels():
    x, y = images()
    probabilities = nn.functional.one_hot(y, 10).float()
    assert lswag.score(conv_net(), (x, probabilities), ["grad_norm"]) == lswag.score(conv_net(), (x, y), ["grad_norm"])
    per_pixel = torch.zeros(16, 8, 8, dtype=torch.long)
    assert as_batch((x, per_pixel), num_classes=3).y.shape == (16, 8, 8)


# --------------------------------------------------------------------------- the refused ones

def _malformed():
    x, y = images()
    nan, inf = x.clone(), x.clone()
    nan[0, 0, 0, 0], inf[3, 1, 2, 2] = float("nan"), float("inf")
    return [
        ("uint8 images", ((x * 40 + 128).clamp(0, 255).to(torch.uint8), y), "inputs are uint8"),
        ("bool inputs", (x > 0, y), "inputs are torch.bool"),
        ("float labels", (x, y.float()), r"labels are torch.float32 of shape \(16,\).*integer"),
        ("bool labels", (x, y > 4), "labels are torch.bool"),
        ("labels >= classes", (x, y + 3), r"labels span 3..12, outside 0..9"),
        ("negative labels", (x, y - 1), r"labels span -1..8, outside 0..9"),
        ("ignore index", (x, torch.where(y == 0, -100, y)), r"labels span -100..9"),
        ("labels (B, 1)", (x, y[:, None]), r"labels of shape \(16, 1\) are neither one per sample"),
        ("fewer labels", (x, y[:15]), "inputs hold 16 samples but the targets 15"),
        ("scalar label", (x, y[0]), "targets are a scalar"),
        ("NaN inputs", (nan, y), "inputs hold 1 NaN or infinite values"),
        ("inf inputs", (inf, y), "inputs hold 1 NaN or infinite values"),
        ("empty batch", (x[:0], y[:0]), r"batch is empty: inputs of shape \(0, 3, 8, 8\)"),
        ("no batch axis", (x[0, 0, 0], y[:1]), "lack a batch axis"),
        ("wrong rank", (x[:, 0], y), r"cannot count the model's outputs on inputs of shape \(16, 8, 8\)"),
        ("float64 inputs", (x.double(), y), "inputs are torch.float64 but the model computes in torch.float32"),
        ("labels as a list", (x, y.tolist()), "targets must be a torch.Tensor or a numpy array, got a list"),
        ("three elements", (x, y, y), r"\(inputs, targets\) or \(inputs,\), got 3 elements"),
        ("dict without inputs", {"features": x, "labels": y}, "holds no inputs under pixel_values"),
        ("dict with two inputs", {"x": x, "images": x, "y": y}, "ambiguous: it holds images, x"),
        ("a string", "digits", "cannot score a str"),
        ("empty loader", DataLoader(TensorDataset(x[:0], y[:0]), batch_size=4), "yields no batch"),
        ("uint8 Batch", Batch((x * 40 + 128).clamp(0, 255).to(torch.uint8), y, 10, "t"), "inputs are uint8"),
        ("Batch labels >= classes", Batch(x, y, 5, "t"), "outside 0..4 of num_classes=5"),
    ]


@pytest.mark.parametrize("case", _malformed(), ids=lambda case: case[0])
def test_malformed_tensors_are_refused_with_one_line(case):
    _, data, match = case
    one_line_error(data, match)


def test_a_batch_keeps_its_non_finite_values_for_the_proxies():
    x, y = images()
    x[0, 0, 0, 0] = float("nan")
    got = lswag.score(conv_net(), Batch(x, y, 10, "test"), ["grad_norm"])
    assert isinstance(got["grad_norm"], Failure) and "non-finite" in got["grad_norm"].reason


def test_num_classes_contradicting_a_batch_is_refused():
    x, y = images()
    one_line_error(Batch(x, y, 10, "test"), "contradicts the Batch's num_classes=10", num_classes=12)


# --------------------------------------------------------------------------- token models

class TinyBert(nn.Module):
    """A BERT-like classifier: token and position embeddings, two transformer encoder layers, mean pooling."""

    def __init__(self, vocabulary=30, width=16, length=8, classes=4):
        super().__init__()
        self.embed = nn.Embedding(vocabulary, width)
        self.position = nn.Parameter(0.02 * torch.randn(1, length, width))
        layer = nn.TransformerEncoderLayer(width, 2, 2 * width, dropout=0.0, activation="gelu", batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(width, classes)

    def forward(self, ids):
        return self.head(self.encoder(self.embed(ids) + self.position).mean(1))


def tokens():
    ids = torch.randint(0, 30, (12, 8), generator=torch.Generator().manual_seed(1))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids),
            "labels": torch.randint(0, 4, (12,), generator=torch.Generator().manual_seed(2))}


def test_a_token_model_gets_reasons_from_the_proxies_that_need_float_inputs():
    torch.manual_seed(0)
    results = {r.name: r.value for r in lswag.evaluate(TinyBert(), tokens(), "all")}
    for name in FLOAT_ONLY:
        assert isinstance(results[name], Failure), name
        assert results[name].reason.startswith(f"{name} needs float inputs (") and "torch.int64 token ids" in \
            results[name].reason, results[name].reason
    # every other proxy scores it (none fails by a caught exception)
    assert all(isinstance(value, float) for name, value in results.items() if name not in FLOAT_ONLY), results


def test_token_inputs_in_every_form():
    torch.manual_seed(0)
    model, data = TinyBert(), tokens()
    expected = lswag.score(model, data, ["grad_norm", "nwot"])
    assert lswag.score(model, (data["input_ids"].int(), data["labels"]), ["grad_norm", "nwot"]) == expected
    assert as_batch(data["input_ids"], classes_of=lambda ids: 4).x.dtype == torch.int64
    one_line_error((data["input_ids"] - 1, data["labels"]), "token ids must be >= 0, the inputs hold -1",
                   model=model)
    one_line_error((data["input_ids"].short(), data["labels"]), "inputs are torch.int16", model=model)


# --------------------------------------------------------------------------- seconds

def record(seconds):
    x, y = images()
    return Record(batch=Batch(x, y, 10, "test"), layers=[], sites=[], seconds=seconds)


def test_a_shared_forward_is_split_evenly_among_its_readers():
    # the gradient pass's forward did the patterns' and the Jacobian's work too: one 6 s forward, 3 readers
    fused = record({"gradient": 6.0, "patterns": 6.0, "jacobian": 6.0, "draws": 1.0})
    shares = pass_shares(fused, {"nwot": frozenset({"kernel"}), "grad_norm": frozenset({"gradient"}),
                                 "jacov": frozenset({"input_jacobian"}), "l_swag": frozenset({"draws", "draw_patterns"}),
                                 "params": frozenset()})
    assert shares == {"nwot": 2.0, "grad_norm": 2.0, "jacov": 2.0, "l_swag": 1.0, "params": 0.0}
    # without a gradient pass each pass is its own forward
    alone = record({"patterns": 4.0, "jacobian": 3.0})
    shares = pass_shares(alone, {"nwot": frozenset({"kernel"}), "swap": frozenset({"patterns"}),
                                 "jacov": frozenset({"input_jacobian"})})
    assert shares == {"nwot": 2.0, "swap": 2.0, "jacov": 3.0}


def test_each_proxy_is_charged_its_share_of_the_passes_and_its_own_computation(monkeypatch):
    recorded, own = [], {}
    record_of, compute = lswag.probe.record, lswag.proxies.compute

    def keep_record(*args, **kwargs):
        recorded.append(record_of(*args, **kwargs))
        return recorded[-1]

    def keep_own(name, *args, **kwargs):
        value, seconds = compute(name, *args, **kwargs)
        own[name] = seconds
        return value, seconds

    monkeypatch.setattr(lswag.probe, "record", keep_record)
    monkeypatch.setattr(lswag.proxies, "compute", keep_own)
    x, y = images(64)
    results = lswag.evaluate(conv_net(), (x, y), ["nwot", "grad_norm", "snip", "jacov", "params"])
    # one gradient pass did the work of all four passes: each of its readers is charged a quarter of it
    (seconds,) = set(recorded[0].seconds.values())
    for r in results:
        share = 0.0 if r.name == "params" else seconds / 4
        assert r.seconds == pytest.approx(own[r.name] + share, rel=1e-12), r.name
    # alone, nwot is charged its whole pass
    (alone,) = lswag.evaluate(conv_net(), (x, y), ["nwot"])
    assert alone.seconds == pytest.approx(own["nwot"] + recorded[1].seconds["patterns"], rel=1e-12)


def test_a_cross_entropy_module_takes_class_labels():
    x, y = images()
    one_line_error((x, y + 3), "outside 0..9", loss_fn=nn.CrossEntropyLoss())
    assert lswag.score(conv_net(), (x, y), ["grad_norm"], loss_fn=nn.CrossEntropyLoss()) == \
        lswag.score(conv_net(), (x, y), ["grad_norm"])
