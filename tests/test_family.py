"""Define-by-run search spaces (``lswag.space``): text forms, sampling, enumeration, search moves,
builds, errors, registration, and the commands on a family named ``module:function``.

The families live in tests/families.py, importable by name; each test registers what it uses in a
copy of the registry (:func:`own_registry`), so no family outlives its test."""
from __future__ import annotations

import csv
import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import families
import lswag
from lswag import spaces
from lswag.cli import main
from lswag.data import Batch
from lswag.errors import LswagError
from lswag.search import load_result
from lswag.spaces.family import ENUMERATION_LIMIT, FamilySpace

pytestmark = pytest.mark.usefixtures("one_torch_thread")

VIT_TEXT = '{"depth": 2, "hidden_dim": 8, "mlp_ratio": [4.0, 2.0], "num_heads": [2, 1]}'


@pytest.fixture(autouse=True)
def own_registry(monkeypatch):
    """Registrations of a test go to a copy of the registry, forgotten after it."""
    monkeypatch.setattr(spaces, "_SPACES", dict(spaces._SPACES))
    monkeypatch.setattr(spaces, "_PROXY_DEFAULTS", dict(spaces._PROXY_DEFAULTS))


@pytest.fixture
def cnn() -> FamilySpace:
    return spaces.get("families:tiny_cnn")


@pytest.fixture
def vit() -> FamilySpace:
    return spaces.get("families:tiny_vit")


def one_line(error: pytest.ExceptionInfo, *parts: str) -> str:
    message = str(error.value)
    assert "\n" not in message and all(part in message for part in parts), message
    return message


def atoms(space: FamilySpace, arch) -> dict[str, object]:
    """``{atomic choice: value}``: per-layer choices element by element, ``mlp_ratio[1]``."""
    found = {}
    for name, value in json.loads(space.format(arch)).items():
        if isinstance(value, list):
            found.update((f"{name}[{i}]", element) for i, element in enumerate(value))
        else:
            found[name] = value
    return found


def gaussian_batch(side: int, n: int = 8, classes: int = 10) -> Batch:
    generator = torch.Generator().manual_seed(0)
    return Batch(torch.randn(n, 3, side, side, generator=generator), torch.arange(n) % classes, classes, "gaussian")


# --- text forms ----------------------------------------------------------------------------------

def test_format_is_canonical_json_and_parse_takes_any_key_order_and_ints_for_floats(vit):
    arch = vit.parse('{"num_heads": [2, 1], "mlp_ratio": [4, 2], "hidden_dim": 8, "depth": 2}')
    assert vit.format(arch) == VIT_TEXT
    assert arch == (("hidden_dim", 8), ("depth", 2), ("mlp_ratio", (4.0, 2.0)), ("num_heads", (2, 1)))
    assert isinstance(dict(arch)["mlp_ratio"][0], float)
    assert vit.parse(json.loads(VIT_TEXT)) == vit.parse(arch) == vit.parse(VIT_TEXT) == arch
    hash(arch)
    for sampled in vit.sample(8, seed=0):
        text = vit.format(sampled)
        assert text == json.dumps(json.loads(text), sort_keys=True)
        assert vit.parse(text) == sampled and vit.format(vit.parse(text)) == text


def test_the_number_of_choices_follows_an_earlier_choice(vit):
    for arch in vit.sample(10, seed=3):
        choices = dict(arch)
        assert len(choices["mlp_ratio"]) == len(choices["num_heads"]) == choices["depth"]
    with pytest.raises(LswagError) as error:
        vit.parse('{"depth": 3, "hidden_dim": 8, "mlp_ratio": [4.0, 2.0], "num_heads": [2, 1]}')
    one_line(error, "'mlp_ratio'", "list of 3 values", "[4.0, 2.0]")


# --- sampling and enumeration ----------------------------------------------------------------------

def test_sample_gives_distinct_architectures_and_is_seeded(vit):
    drawn = vit.sample(20, seed=1)
    assert len(set(drawn)) == 20
    assert vit.sample(20, seed=1) == drawn and vit.sample(20, seed=2) != drawn


def test_enumeration_is_exact_and_in_depth_first_order(cnn):
    expected = len(families.CNN_WIDTHS) * len(families.CNN_ACTIVATIONS) * sum(
        len(families.CNN_KERNELS) ** depth for depth in families.CNN_DEPTHS)
    listed = list(cnn.enumerate())
    assert cnn.size() == len(listed) == len(set(listed)) == expected == 56
    assert all(cnn.parse(cnn.format(arch)) == arch for arch in listed)
    assert listed[0] == (("width", 4), ("depth", 1), ("kernel", (1,)), ("act", "relu"))
    assert listed[-1] == (("width", 8), ("depth", 3), ("kernel", (3, 3, 3)), ("act", "gelu"))
    with pytest.raises(LswagError) as error:
        cnn.sample(57, seed=0)
    one_line(error, "cannot sample 57 distinct", "it has 56")


def test_a_huge_family_is_not_enumerated_but_samples(monkeypatch):
    huge = spaces.get("families:huge")
    for _ in range(2):      # the second time from what the first found
        with pytest.raises(LswagError) as error:
            huge.size()
        one_line(error, f"family families:huge has more than {ENUMERATION_LIMIT} architectures; "
                        "lswag does not enumerate it")
    assert len(set(huge.sample(5, seed=0))) == 5


def test_replays_run_on_the_meta_device_and_leave_the_global_rng_alone(vit):
    made = []
    original = families.TinyViT.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        made.append(self.head.weight.device.type)

    state = torch.random.get_rng_state()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(families.TinyViT, "__init__", spy)
        vit.mutate(vit.sample(3, seed=0)[0], random.Random(0))
        vit.build(VIT_TEXT, seed=0)
    assert made == ["meta"] * 5 + ["cpu"]     # 3 samples, the child, the parse of VIT_TEXT; then the build
    assert torch.equal(state, torch.random.get_rng_state())


def test_a_family_that_fails_on_the_meta_device_is_replayed_on_the_cpu():
    space = spaces.get("families:counted_on_meta")
    state = torch.random.get_rng_state()
    assert space.size() == 2 and space.sample(2, seed=0) == space.sample(2, seed=0)
    assert space.format(space.parse({"width": 8})) == '{"width": 8}'
    assert torch.equal(state, torch.random.get_rng_state())


# --- search moves ----------------------------------------------------------------------------------

def test_mutation_changes_exactly_one_atomic_choice(vit):
    rng = random.Random(0)
    for parent in vit.sample(30, seed=0):
        child = vit.mutate(parent, rng)
        before, after = atoms(vit, parent), atoms(vit, child)
        changed = [atom for atom in before.keys() & after.keys() if before[atom] != after[atom]]
        assert len(changed) == 1 and child != parent, (parent, child)
        if changed != ["depth"]:
            assert before.keys() == after.keys()


def test_a_deeper_child_keeps_its_parents_layers_and_draws_the_new_ones(vit):
    parent = vit.parse('{"depth": 1, "hidden_dim": 8, "mlp_ratio": [4.0], "num_heads": [2]}')
    new_layers = set()
    for seed in range(40):
        child = dict(vit.mutate(parent, random.Random(seed)))
        if child["depth"] > 1:
            assert child["mlp_ratio"][0] == 4.0 and child["num_heads"][0] == 2 and child["hidden_dim"] == 8
            new_layers.add(child["mlp_ratio"][1:] + child["num_heads"][1:])
    assert len(new_layers) > 2      # drawn, not copied


def test_mutation_with_a_probability_changes_at_least_one_choice(vit):
    rng = random.Random(1)
    for parent in vit.sample(20, seed=1):
        child = vit.mutate(vit.format(parent), rng, prob=0.3)
        assert child != parent and vit.parse(vit.format(child)) == child


def test_a_family_of_one_architecture_cannot_mutate():
    single = lswag.space(lambda trial: nn.Linear(1, 1), name="single")
    with pytest.raises(LswagError) as error:
        single.mutate(single.sample(1)[0], random.Random(0))
    one_line(error, "single architecture")


def test_crossover_takes_each_choice_from_a_parent(vit):
    rng = random.Random(0)
    archs = vit.sample(12, seed=4)
    for first, second in zip(archs[::2], archs[1::2]):
        child = vit.crossover(first, second, rng)
        assert vit.parse(vit.format(child)) == child
        parents = (atoms(vit, first), atoms(vit, second))
        for atom, value in atoms(vit, child).items():
            inherited = [parent[atom] for parent in parents if atom in parent]
            assert not inherited or value in inherited, (atom, first, second, child)


# --- building and scoring --------------------------------------------------------------------------

def test_build_is_seeded_and_scores_a_finite_l_swag(vit):
    first, again, other = (vit.build(VIT_TEXT, num_classes=5, seed=seed, image_size=8) for seed in (0, 0, 1))
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    assert not torch.equal(first.head.weight, other.head.weight)
    assert first.head.out_features == 5 and first.position.shape[1] == 4      # four 4 px patches of 8 px
    value = lswag.score(first, gaussian_batch(8, classes=5), ["l_swag"])["l_swag"]
    assert isinstance(value, float) and math.isfinite(value)


def test_the_families_parameters_are_its_build_options(cnn, vit):
    assert cnn.check_build_options({"stem": 2}) == {"stem": 2} and not cnn.input_sized and vit.input_sized
    assert vit.sized_build({}, torch.zeros(1, 3, 8, 8)) == {"image_size": 8}
    assert cnn.build(cnn.sample(1)[0], stem=2)[0].out_channels == 2
    with pytest.raises(LswagError) as error:
        cnn.build(cnn.sample(1)[0], C=2)
    one_line(error, "unknown build option 'C' of space families:tiny_cnn; valid: stem")
    with pytest.raises(LswagError) as error:
        lswag.space(lambda trial, width: nn.Linear(1, 1), name="no default")
    one_line(error, "parameter 'width' of family no default needs a default")
    with pytest.raises(LswagError) as error:
        spaces.get("families:not_a_network").build('{"width": 4}')
    one_line(error, "family families:not_a_network returned a str, not a torch.nn.Module")


# --- errors --------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,parts", [
    ('{"depth": 2, "mlp_ratio": [4.0, 2.0], "num_heads": [2, 1]}', ("lacks choice 'hidden_dim'", "options: 8, 16")),
    ('{"depth": 2, "hidden_dim": 12, "mlp_ratio": [4.0, 2.0], "num_heads": [2, 1]}',
     ("choice 'hidden_dim'", "is 12, not one of its options: 8, 16")),
    ('{"depth": 5, "hidden_dim": 8}', ("choice 'depth'", "is 5, not one of its options: 1..3")),
    ('{"depth": 2, "hidden_dim": 8, "mlp_ratio": [4.0, 3.0], "num_heads": [2, 1]}',
     ("choice 'mlp_ratio[1]'", "is 3.0, not one of its options: 2.0, 4.0")),
    ('{"depth": true, "hidden_dim": 8}', ("choice 'depth'", "is true")),
    ('{"depth": 1, "hidden_dim": 8, "mlp_ratio": [4.0], "num_heads": [2], "patch": 4, "x": 1}',
     ("has choices the family does not ask: 'patch', 'x'", "it asks: 'hidden_dim', 'depth'")),
    ('{"depth": 1,', ("not valid JSON",)),
    ("8-2-4.0", ("cannot parse an arch of family families:tiny_vit",)),
])
def test_a_malformed_architecture_is_a_one_line_error(vit, text, parts):
    with pytest.raises(LswagError) as error:
        vit.parse(text)
    one_line(error, *parts)


@pytest.mark.parametrize("family,parts", [
    ("asks_twice", ("asks choice 'width' twice",)),
    ("no_options", ("choice 'width' of family families:no_options has no options",)),
    ("list_option", ("option [4, 8] of choice 'widths'", "None, booleans, finite numbers or strings")),
    ("reversed_bounds", ("integer choice 'depth' of family families:reversed_bounds", "low=4, high=2")),
    ("negative_count", ("choices 'kernel' of family families:negative_count needs an integer count >= 0, got -1",)),
])
def test_a_bad_question_is_a_one_line_error_naming_the_family_and_the_choice(family, parts):
    with pytest.raises(LswagError) as error:
        spaces.get(f"families:{family}").sample(1)
    one_line(error, *parts)


@pytest.mark.parametrize("name,parts", [
    ("no_such_module:f", ("cannot import module no_such_module for space 'no_such_module:f'", "no_such_module")),
    ("families:nope", ("module families has no family nope",)),
    ("families:NOT_A_FUNCTION", ("families:NOT_A_FUNCTION is a int, not a family function",)),
    ("nb999", ("unknown search space 'nb999'; valid choices: ", "nb201", "package.module:function")),
])
def test_an_unknown_space_or_family_is_a_one_line_error(name, parts):
    with pytest.raises(LswagError) as error:
        spaces.get(name)
    one_line(error, *parts)


# --- asking a chooser ------------------------------------------------------------------------------

class Scripted:
    """A chooser answering from a script, recording the questions, as an Optuna trial adapter would."""

    def __init__(self, **answers):
        self.answers, self.asked = answers, []

    def choice(self, name, options):
        self.asked.append(name)
        return self.answers[name]

    def choices(self, name, options, count):
        self.asked.append(name)
        return self.answers[name][:count]

    def integer(self, name, low, high, step=1):
        self.asked.append((name, low, high, step))
        return self.answers[name]


def test_ask_records_the_choosers_answers_in_the_order_asked(vit):
    trial = Scripted(hidden_dim=16, depth=2, mlp_ratio=[2, 4, 4], num_heads=[1, 2, 2])
    arch = vit.ask(trial)
    assert arch == (("hidden_dim", 16), ("depth", 2), ("mlp_ratio", (2.0, 4.0)), ("num_heads", (1, 2)))
    assert trial.asked == ["hidden_dim", ("depth", 1, 3, 1), "mlp_ratio", "num_heads"]
    with pytest.raises(LswagError) as error:
        vit.ask(Scripted(hidden_dim=16, depth=7))
    one_line(error, "choice 'depth'", "is 7, not one of its options: 1..3")


def test_ask_asks_each_choice_once_when_the_family_fails_on_the_meta_device():
    space = spaces.get("families:counted_on_meta")
    trial = Scripted(width=8)
    assert space.ask(trial) == (("width", 8),) and trial.asked == ["width"]


# --- registration ------------------------------------------------------------------------------------

def test_space_registers_as_a_decorator_with_and_without_arguments_and_as_a_call():
    def plain(trial):
        """A plain family."""
        return nn.Linear(trial.integer("width", 1, 2), 1)

    made = lswag.space(plain)
    assert isinstance(made, FamilySpace) and spaces.get(made.name) is made
    assert made.name == f"{__name__}:test_space_registers_as_a_decorator_with_and_without_arguments_and_as_a_call" \
                        ".<locals>.plain"
    assert made.description == "A plain family." and made.truth_arch_column == "arch"

    @lswag.space
    def bare(trial):
        return nn.Linear(trial.integer("width", 1, 2), 1)

    @lswag.space(name="sized", input_shape=(1, 8, 8), num_classes=3, truth_column="arch_json")
    def sized(trial, num_classes=3, image_size=8):
        return nn.Linear(trial.integer("width", 1, 2), num_classes)

    assert isinstance(bare, FamilySpace) and spaces.get(bare.name) is bare
    assert spaces.get("sized") is sized and sized.input_shape == (1, 8, 8) and sized.num_classes == 3
    assert sized.input_sized and sized.truth_arch_column == "arch_json"


def test_registering_a_family_again_replaces_it_and_other_duplicates_are_refused():
    first = lswag.space(families.tiny_cnn, name="notebook")
    second = lswag.space(families.tiny_vit, name="notebook")
    assert spaces.get("notebook") is second is not first
    with pytest.raises(LswagError) as error:
        lswag.space(families.tiny_cnn, name="nb201")
    one_line(error, "'nb201' is already registered")
    assert spaces.get("nb201").name == "nb201"


# --- the commands, on --space families:FUNCTION ------------------------------------------------------

def test_cli_scores_a_family_architecture(capsys):
    assert main(["score", "--space", "families:tiny_vit", "--arch", VIT_TEXT, "--data", "gaussian",
                 "--batch-size", "8", "--image-size", "8", "--proxies", "l_swag,params", "--format", "json",
                 "--device", "cpu"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["arch"] == VIT_TEXT
    assert all(isinstance(r["value"], float) and math.isfinite(r["value"]) for r in document["results"])


def test_cli_benches_a_family_against_a_truth_keyed_by_the_choices_json(tmp_path, capsys, cnn):
    truth = tmp_path / "truth.csv"
    with truth.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["arch", "acc"])
        for arch in cnn.sample(8, seed=0):
            # the table's own key order: the bench reads it through the space's parse
            writer.writerow([json.dumps(dict(reversed(json.loads(cnn.format(arch)).items()))),
                             dict(arch)["width"] * dict(arch)["depth"]])
    assert main(["bench", "--space", "families:tiny_cnn", "--truth", str(truth), "--metric", "acc", "--n", "8",
                 "--data", "gaussian", "--batch-size", "8", "--image-size", "8", "--proxies", "params",
                 "--store", str(tmp_path / "bench.sqlite"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "families:tiny_cnn: 8 architectures vs acc" in out and "params" in out


@pytest.mark.parametrize("strategy", ["evolution", "random"])
def test_cli_searches_a_family(tmp_path, capsys, strategy, vit):
    out = tmp_path / "found.json"
    budget = (["--population", "4", "--generations", "2", "--parents", "2"] if strategy == "evolution"
              else ["--evaluations", "6"])
    assert main(["search", "--space", "families:tiny_vit", "--strategy", strategy, "--fitness", "params", *budget,
                 "--data", "gaussian", "--batch-size", "8", "--image-size", "8", "--device", "cpu",
                 "--store", str(tmp_path / "search.sqlite"), "--out", str(out)]) == 0
    result = load_result(out)
    assert result["space"] == "families:tiny_vit" and f"best: {result['arch']}" in capsys.readouterr().out
    assert vit.format(result["arch"]) == result["arch"]
    assert result["evaluations"] == (8 if strategy == "evolution" else 6)


def test_cli_trains_a_family_architecture(tmp_path, capsys):
    arch = '{"act": "relu", "depth": 1, "kernel": [3], "width": 4}'
    assert main(["train", "--space", "families:tiny_cnn", "--arch", arch, "--build", "stem=2", "--image-size", "8",
                 "--epochs", "1", "--device", "cpu", "--checkpoint", str(tmp_path / "cnn.pt")]) == 0
    assert f"families:tiny_cnn {arch}: test accuracy" in capsys.readouterr().out


def test_the_console_finds_a_family_module_in_the_working_directory(tmp_path):
    """The real entry point in a fresh process: the module is found in the directory it runs in."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)
    command = [sys.executable, "-c", "import sys; sys.path.remove(''); from lswag.cli import main; "
               "sys.exit(main())", "score", "--space", "families:tiny_cnn", "--arch",
               '{"act": "gelu", "depth": 2, "kernel": [1, 3], "width": 8}', "--data", "gaussian", "--batch-size",
               "8", "--image-size", "8", "--proxies", "params", "--device", "cpu"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120,
                          cwd=Path(families.__file__).parent)
    assert done.returncode == 0 and "params" in done.stdout, done.stderr
