"""Multi-objective search: Pareto ranks and hypervolume against brute force, the archive's Pareto order,
the front of a search, the measured latency cost and its store key, latency budgets, the front's plot and
table, and training a point of the front (``lswag train --from RESULT --pick N``)."""
from __future__ import annotations

import itertools
import json
import math
import statistics
import numpy as np
import pytest

import lswag
from lswag import proxies, spaces
from lswag.cli import main
from lswag.data import load_batch
from lswag.engine import SCORING_THREADS
from lswag.proxies import Failure
from lswag.search import Archive, Budget, SearchConfig, load_result, make_fitness, search
from lswag.search.pareto import dominance, first_front, hypervolume, maximised, pareto_ranks
from lswag.settings import Scoring, TruthSource

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NB201 = spaces.get("nb201")
TINY = {"C": 4, "N": 1}
CLI_TINY = ["--build", "C=4", "--build", "N=1", "--batch-size", "8", "--image-size", "8"]


def scoring(proxies=("nwot",), **kwargs) -> Scoring:
    return Scoring("nb201", tuple(proxies), data="digits", batch_size=8, image_size=8, build=TINY, **kwargs)


def dominates(a, b) -> bool:
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


# --- the maths, against brute force ---------------------------------------------------------------

@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("objectives", [2, 3])
def test_pareto_ranks_peel_non_dominated_sets(seed, objectives):
    points = np.random.default_rng(seed).integers(0, 5, size=(30, objectives)).astype(float)   # ties included
    expected, left, rank = np.full(len(points), -1), set(range(len(points))), 0
    while left:
        layer = {i for i in left if not any(dominates(points[j], points[i]) for j in left)}
        expected[list(layer)] = rank
        left, rank = left - layer, rank + 1
    assert pareto_ranks(points).tolist() == expected.tolist()
    assert first_front(points) == [i for i in range(len(points)) if expected[i] == 0]
    assert dominance(points).tolist() == [[dominates(a, b) for b in points] for a in points]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("objectives", [2, 3])
def test_hypervolume_is_the_count_of_dominated_unit_cells(seed, objectives):
    points = np.random.default_rng(seed).integers(0, 7, size=(8, objectives)).astype(float)
    reference = np.full(objectives, 1.0)     # points at 0 lie outside and add nothing
    cells = sum(any((p >= np.array(corner) + 1).all() for p in points)
                for corner in itertools.product(range(1, 7), repeat=objectives))
    assert hypervolume(points, reference) == cells


def test_hypervolume_of_fitness_against_a_cost():
    fitness, cost = [3.0, 5.0, 4.0], [1.0, 4.0, 2.0]     # (cost, fitness): (1, 3), (4, 5), (2, 4)
    # against (cost 5, fitness 0): [1, 5] x [0, 3] + [2, 5] x [3, 4] + [4, 5] x [4, 5]
    assert hypervolume(maximised(fitness, [cost]), reference=(0.0, -5.0)) == 4 * 3 + 3 * 1 + 1 * 1
    assert maximised(fitness, [cost]).tolist() == [[3, -1], [5, -4], [4, -2]]


# --- the archive -------------------------------------------------------------------------------------

def result(value):
    return type("Result", (), {"value": value, "seconds": 0.0})()


def test_the_archive_ranks_by_pareto_front_then_fitness_then_order():
    rows = {"a": (3.0, 1.0), "b": (7.0, 9.0), "c": (5.0, 4.0), "d": (4.0, 5.0), "e": (7.0, 9.0),
            "f": (Failure("singular"), 0.5), "g": (2.0, Failure("no weights")), "h": (6.0, 4.0)}
    plain, costed = Archive(make_fitness("nwot")), Archive(make_fitness("nwot"), minimise=("params",))
    for arch, (nwot, params) in rows.items():
        for archive in (plain, costed):
            archive.add(arch, {"nwot": result(nwot), "params": result(params)})
    assert plain.ranked() == ["b", "e", "h", "c", "d", "a", "g", "f"]          # fitness alone, as ever
    # front 0: a (cheapest), h (beats c: same cost), b and e (equal, the fittest); front 1: c; front 2: d;
    # f and g (a failed fitness or cost) last
    assert costed.pareto_ranks().tolist() == [0, 0, 1, 2, 0, 8, 8, 0]
    assert costed.ranked() == ["b", "e", "h", "a", "c", "d", "g", "f"]
    assert costed.front() == [0, 1, 4, 7]
    assert math.isnan(costed.costs()[6][0])


# --- the search -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pareto")
    config = SearchConfig(scoring(), strategy="evolution", fitness="nwot", population=6, generations=2, parents=3,
                          minimise=("params",))
    return search(config, folder / "s.sqlite", progress=False)


def test_a_search_minimising_params_returns_its_pareto_front(searched):
    objectives = searched.objectives
    assert searched.minimise == ["params"] and len(objectives["fitness"]) == len(searched.candidates) == 12
    points = {arch: (f, -p) for arch, f, p in zip(searched.candidates, objectives["fitness"], objectives["params"])
              if f is not None and p is not None}
    front = [point["arch"] for point in searched.front]
    assert front and len(set(front)) == len(front)
    for point in searched.front:
        assert (point["fitness"], -point["params"]) == points[point["arch"]]
        assert point["scores"] == {"nwot": point["fitness"]} and "truth" not in point
        assert not any(dominates(other, points[point["arch"]]) for other in points.values())
    for arch, values in points.items():
        if arch not in front:
            assert any(dominates(points[f], values) for f in front), arch
    assert [p["params"] for p in searched.front] == sorted(p["params"] for p in searched.front)
    # the result's arch stays the best by fitness, the front's fittest point (its costliest)
    best = max(f for f in objectives["fitness"] if f is not None)
    assert searched.scores["nwot"] == best == searched.front[-1]["fitness"] and searched.arch in front


def test_front_points_carry_their_ground_truth(tmp_path):
    cells = NB201.sample(20, seed=3)
    truth = tmp_path / "truth.csv"
    truth.write_text("arch_str,acc,other\n" + "".join(f"{NB201.format(c)},{list(c).count('nor_conv_3x3')},{i}\n"
                                                       for i, c in enumerate(cells)))
    config = SearchConfig(scoring(), strategy="random", evaluations=6, fitness="nwot", minimise=("params",),
                          truth=TruthSource(str(truth), "acc"), more_metrics=("other",))
    found = search(config, tmp_path / "s.sqlite", progress=False)
    expected = {NB201.format(c): (list(c).count("nor_conv_3x3"), i) for i, c in enumerate(cells)}
    assert found.front and all((point["truth"]["acc"], point["truth"]["other"]) == expected[point["arch"]]
                               for point in found.front)


def test_a_search_without_costs_has_no_front(tmp_path):
    found = search(SearchConfig(scoring(("params",)), strategy="random", evaluations=3, fitness="params"),
                   tmp_path / "s.sqlite", progress=False)
    assert found.minimise == [] and found.front == [] and found.objectives == {}


# --- latency ---------------------------------------------------------------------------------------

def test_latency_is_a_positive_timing_keyed_by_where_it_was_taken():
    batch = load_batch("digits", batch_size=8, image_size=8, seed=0)
    model = NB201.build(NB201.sample(1, seed=0)[0], num_classes=10, **TINY)
    value = lswag.score(model, batch, ["latency"], options={"latency": {"batch_size": 20, "repeats": 3}})["latency"]
    assert isinstance(value, float) and math.isfinite(value) and value > 0
    keys = scoring(("params", "latency")).store_keys()
    assert keys["latency"]["device"] == "cpu" and keys["latency"]["host"].strip()
    assert keys["latency"]["threads"] == SCORING_THREADS
    assert not {"host", "threads"} & set(keys["params"])
    # a cost, not a zero-cost proxy: out of 'all' (and of what a fitness may be), listed when asked for
    assert "latency" not in proxies.names() and "latency" in proxies.names(timed=True)
    assert proxies.get("latency").timed and not proxies.get("params").timed


@pytest.mark.parametrize("options, message", [({"repeats": 0}, "latency repeats must be an integer >= 1"),
                                              ({"warmup": -1}, "latency warmup must be an integer >= 0"),
                                              ({"batch_size": 1.5}, "latency batch_size must be an integer >= 1")])
def test_latency_options_are_checked(options, message):
    with pytest.raises(lswag.LswagError, match=message):
        scoring(("latency",), options={"latency": options})


def test_a_latency_budget_admits_only_faster_candidates(tmp_path):
    budget = Budget(max_latency_ms=2.5)
    assert budget.proxies == ("latency",) and budget.text() == "latency in [-inf, 2.5] ms"
    assert budget.admits({"latency": 2.0}) and not budget.admits({"latency": 3.0})
    # a limit between the timings of random cells: the search keeps those its own timings put below it
    batch = load_batch("digits", batch_size=8, image_size=8, seed=0)
    timings = [lswag.score(NB201.build(cell, num_classes=10, **TINY), batch, ["latency"])["latency"]
               for cell in NB201.sample(6, seed=1)]
    config = SearchConfig(scoring(), strategy="random", evaluations=4, fitness="nwot", minimise=("latency",),
                          budget=Budget(max_latency_ms=statistics.median(timings)))
    found = search(config, tmp_path / "s.sqlite", progress=False)
    assert all(t <= config.budget.max_latency_ms for t in found.objectives["latency"])
    assert all(point["latency"] <= config.budget.max_latency_ms for point in found.front)


def test_a_pareto_search_cannot_prune():
    with pytest.raises(lswag.LswagError, match="--minimise needs a strategy that proposes architectures"):
        SearchConfig(scoring(), strategy="prune", minimise=("params",))


# --- the command line --------------------------------------------------------------------------------

def one_line_error(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_cli_writes_the_front_plot_trains_a_point_and_refuses_bad_picks(tmp_path, capsys):
    out = tmp_path / "found.json"
    assert main(["search", "--strategy", "random", "--evaluations", "5", "--fitness", "nwot", "--minimise", "params",
                 *CLI_TINY, "--store", str(tmp_path / "s.sqlite"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    found = load_result(out)
    plot = out.with_suffix(".png")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"front plotted in {plot}" in printed
    assert found["minimise"] == ["params"] and found["front"]
    assert f"Pareto front of nwot against params: {len(found['front'])} of 5 candidates" in printed
    table = printed.split("Pareto front", 1)[1].splitlines()[1:len(found["front"]) + 2]
    assert table[0].split() == ["#", "arch", "fitness", "params", "(M)"]
    assert [row.split()[0] for row in table[1:]] == [str(i) for i in range(len(found["front"]))]

    train = ["train", "--from", str(out), "--epochs", "1", "--image-size", "8"]
    assert main([*train, "--pick", "0"]) == 0
    assert found["front"][0]["arch"] in capsys.readouterr().out
    size = len(found["front"])
    one_line_error(capsys, [*train, "--pick", str(size)],
                   f"--pick {size} is out of range: the Pareto front of {out} has {size} points, 0..{size - 1}")
    one_line_error(capsys, ["train", "--arch", "1601", "--pick", "0"], "--pick needs --from RESULT.json")

    plain = tmp_path / "plain.json"
    data = json.loads(out.read_text())
    plain.write_text(json.dumps({**data, "minimise": [], "front": [], "objectives": {}}))
    one_line_error(capsys, [*train[:1], "--from", str(plain), "--pick", "0"],
                   f"--pick 0: {plain} has no Pareto front (a search without --minimise)")


def test_cli_refuses_an_unknown_cost(tmp_path, capsys):
    one_line_error(capsys, ["search", "--minimise", "energy", *CLI_TINY, "--store", str(tmp_path / "s.sqlite")],
                   "unknown cost to minimise 'energy'")
    assert not (tmp_path / "s.sqlite").exists()
