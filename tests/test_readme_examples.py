"""The README's define-by-run examples run as written: the ViT family searched for a Pareto front and a
point of it trained, and the CNN family sampled and scored."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from lswag import spaces
from lswag.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def example(name: str) -> str:
    """The fenced block that follows ``<!-- example: NAME -->`` in the README."""
    found = re.search(rf"<!-- example: {re.escape(name)} -->\n```\w*\n(.*?)```", README.read_text(), re.S)
    assert found, f"the README has no example {name!r}"
    return found.group(1)


def commands(text: str) -> list[list[str]]:
    """The shell lines of a bash block (continuations joined), as argument lists."""
    return [shlex.split(line) for line in text.replace("\\\n", " ").splitlines() if line.strip()]


@pytest.fixture
def registry(monkeypatch):
    """Families registered by a test leave the space registry as it was."""
    monkeypatch.setattr(spaces, "_SPACES", dict(spaces._SPACES))
    monkeypatch.setattr(spaces, "_PROXY_DEFAULTS", dict(spaces._PROXY_DEFAULTS))


@pytest.mark.slow
def test_the_vit_family_search_gives_a_front_and_trains_a_point_of_it(tmp_path, monkeypatch, capsys, registry):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "my_families.py").write_text(example("my_families.py"))
    search, train = commands(example("vit search"))
    assert search[:2] == ["lswag", "search"] and train[:2] == ["lswag", "train"]
    assert main(search[1:]) == 0
    printed = capsys.readouterr().out
    assert "Pareto front of l_swag against params" in printed
    assert (tmp_path / "runs/vit.png").stat().st_size > 0
    from lswag.search import load_result

    result = load_result(tmp_path / "runs/vit.json")
    assert result["front"] and all(point["params"] <= 0.6 for point in result["front"])
    assert main(train[1:]) == 0
    assert "test accuracy" in capsys.readouterr().out


def test_the_cnn_family_samples_builds_and_scores(registry, capsys):
    namespace = {"__name__": "readme_cnn"}
    exec(compile(example("cnn family"), "README cnn family", "exec"), namespace)
    family = namespace["resnet"]
    assert len(capsys.readouterr().out.strip().splitlines()) == 1       # the two sampled architectures
    assert set(namespace["best"]) == {"l_swag"} and namespace["best"]["l_swag"] > 0
    arch = family.sample(1, seed=3)[0]
    assert family.parse(family.format(arch)) == arch
