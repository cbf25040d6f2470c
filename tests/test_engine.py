"""The scoring engine: one settings object passed whole, the same rows and results as before the
redesign, one architecture never aborting a run."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import lswag
from lswag import minibench
from lswag.cli import main
from lswag.data import Batch
from lswag.engine import Engine
from lswag.settings import Scoring
from lswag.errors import LswagError
from lswag.proxies import Failure
from lswag.search import SearchConfig, Searcher
from lswag.store import Store

FIXTURE = Path(__file__).parent / "fixtures" / "pre_redesign"
#: the commands that wrote the fixture (its README), less the store and output paths
BENCH = ["bench", "--space", "nb201", "--truth", str(minibench.TABLE), "--metric", "test_acc", "--n", "20",
         "--proxies", "l_swag,nwot,synflow", "--build", "C=8", "--build", "N=1", "--image-size", "8", "--workers", "2"]
SEARCH = ["search", "--space", "nb201", "--strategy", "evolution", "--fitness", "l_swag", "--evaluations", "30",
          "--population", "10", "--generations", "3", "--parents", "3", "--seed", "0", "--build", "C=8", "--build",
          "N=1", "--image-size", "8", "--truth", str(minibench.TABLE), "--metric", "test_acc", "--workers", "2"]
#: keys that name the code that computed a row, not how it was scored
VERSION_KEYS = ("lswag", "implementation")


def rows(path) -> dict[tuple, tuple]:
    """``{(arch, proxy, settings less version keys): (value, failure)}`` of a store."""
    with sqlite3.connect(path) as db:
        found = db.execute("SELECT arch, proxy, settings, value, failure FROM results").fetchall()
    out = {}
    for arch, proxy, settings, value, failure in found:
        scored = {k: v for k, v in json.loads(settings).items() if k not in VERSION_KEYS}
        out[(arch, proxy, json.dumps(scored, sort_keys=True))] = (value, failure)
    return out


def within(old, new) -> bool:
    """``new`` holds ``old``'s settings unchanged, and settings added since only at their unset values."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return old == new
    added = {k: v for k, v in new.items() if k not in old}
    return all(k in new and within(v, new[k]) for k, v in old.items()) and all(v in (None, (), [], {})
                                                                                  for v in added.values())


@pytest.fixture
def two_cores(monkeypatch):
    """Workers of one torch thread each, as on the 2-core machine that wrote the fixture, wherever the test runs."""
    monkeypatch.setattr(os, "cpu_count", lambda: 2)


def test_bench_and_search_write_the_rows_and_find_the_result_of_the_pre_redesign_code(tmp_path, capsys, two_cores):
    store = tmp_path / "store.sqlite"
    assert main([*BENCH, "--store", str(store)]) == 0
    assert main([*SEARCH, "--store", str(store), "--out", str(tmp_path / "search.json")]) == 0
    before, after = rows(FIXTURE / "store.sqlite"), rows(store)
    assert before.keys() == after.keys() and len(after) == 82
    for key, (value, failure) in before.items():
        assert after[key][1] == failure, key
        assert after[key][0] == pytest.approx(value, rel=1e-6, abs=0), key

    old, new = json.loads((FIXTURE / "search.json").read_text()), json.loads((tmp_path / "search.json").read_text())
    for field in ("arch", "build", "strategy", "fitness", "evaluations", "failures", "skipped", "seed", "truth",
                  "candidates", "calibration"):
        assert new[field] == old[field], field
    assert within(old["settings"], new["settings"])
    assert new["history"] == pytest.approx(old["history"], rel=1e-6)
    assert new["scores"] == pytest.approx(old["scores"], rel=1e-6)


def test_a_store_of_the_pre_redesign_code_is_reused_whole(tmp_path, capsys, two_cores):
    store = tmp_path / "store.sqlite"
    shutil.copy(FIXTURE / "store.sqlite", store)
    def proxies_of_rows() -> list[str]:
        with sqlite3.connect(store) as db:
            return sorted(proxy for (proxy,) in db.execute("SELECT proxy FROM results"))

    before = proxies_of_rows()
    assert main([*BENCH, "--store", str(store)]) == 0
    assert main([*SEARCH, "--store", str(store), "--out", str(tmp_path / "search.json")]) == 0
    # every score found in the store, computed again only for flops, whose implementation changed since (version 2)
    added = list((Counter(proxies_of_rows()) - Counter(before)).elements())
    assert set(added) <= {"flops"} and len(proxies_of_rows()) == len(before) + len(added)
    assert json.loads((tmp_path / "search.json").read_text())["arch"] == json.loads(
        (FIXTURE / "search.json").read_text())["arch"]


def test_search_scores_on_the_device_it_was_given(tmp_path, monkeypatch):
    """Every store key of a search (fitness, budget, result, LIBRA calibration) names the search's device."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)   # keys only: nothing runs on the device
    config = SearchConfig(Scoring("nb201", device="cuda", build={"C": 4, "N": 1}), fitness="l_swag", also=("nwot",))
    searcher = Searcher(config, tmp_path / "s.sqlite", progress=False)
    try:
        assert searcher.engine.setup.device == "cuda"
        assert set(searcher.engine.keys) >= {"l_swag", "nwot", "params", "flops"}
        assert all(settings["device"] == "cuda" for settings in searcher.engine.keys.values())
    finally:
        searcher.close()


def test_settings_are_checked_whole_on_creation():
    with pytest.raises(LswagError, match="unknown init 'xavier'"):
        Scoring("nb201", init="xavier")
    with pytest.raises(LswagError, match="unknown build option 'width'"):
        Scoring("nb201", build={"width": 3})
    with pytest.raises(LswagError, match="has no option 'windw'"):
        Scoring("nb201", options={"l_swag": {"windw": (1, 3)}})
    setup = Scoring("nb201", ("l_swag", "nwot"), options={"nwot": {}})
    assert replace(setup, seed=3).store_keys()["nwot"]["seed"] == 3 and setup.store_keys()["nwot"]["seed"] == 0


class Flaky(nn.Module):
    """A network whose second block raises on its way back: a user's shape bug in backward only."""

    def __init__(self):
        super().__init__()
        self.conv, self.head = nn.Conv2d(3, 4, 3), nn.Linear(4, 10)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))


def tiny_batch() -> Batch:
    generator = torch.Generator().manual_seed(0)
    return Batch(torch.randn(8, 3, 8, 8, generator=generator), torch.arange(8) % 10, 10, "gaussian")


def test_an_exception_in_one_proxy_is_its_failure_unless_fail_fast(monkeypatch):
    from lswag import proxies as registry

    def broken(record, model):
        raise IndexError("index 7 is out of bounds for dimension 0 with size 4")

    monkeypatch.setitem(registry._REGISTRY, "broken", replace(registry.get("params"), name="broken", function=broken))
    results = lswag.score(Flaky(), tiny_batch(), ["params", "broken"])
    assert isinstance(results["params"], float)
    assert results["broken"] == Failure("broken raised IndexError: index 7 is out of bounds for dimension 0 with size 4")
    with pytest.raises(IndexError):
        lswag.score(Flaky(), tiny_batch(), ["params", "broken"], fail_fast=True)


def test_a_network_that_cannot_run_fails_its_proxies_and_the_run_goes_on(tmp_path):
    class WrongShape(Flaky):
        def forward(self, x):
            return self.head(self.conv(x))       # (B, 4, 6, 6) into Linear(4, 10): a shape error

    results = lswag.score(WrongShape(), tiny_batch(), ["nwot", "zico"])
    assert all(isinstance(v, Failure) and v.reason.startswith("the probe raised RuntimeError") for v in results.values())

    setup = Scoring("nb201", ("nwot",), batch_size=8, image_size=8, build={"C": 4, "N": 1})
    with Store(tmp_path / "s.sqlite", "nb201") as store, Engine(setup, store) as engine:
        good = engine.score_network("good", lambda classes: Flaky())
        bad = engine.score_network("bad", lambda classes: WrongShape())
        assert isinstance(good["nwot"].value, float)
        assert bad["nwot"].value.reason.startswith("the probe raised RuntimeError")
        assert store.results("nwot", engine.keys["nwot"]).keys() == {"good", "bad"}    # the failure is stored
