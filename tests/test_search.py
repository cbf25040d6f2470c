"""Zero-shot search: fitness, budgets, evolution / random / pruning, exact resume, truth look-up, errors."""
from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from scipy import stats

from lswag import spaces
from lswag.settings import Scoring, TruthSource
from lswag.cli import main
from lswag.errors import LswagError
from lswag.proxies import Failure
from lswag.search import Archive, Budget, SearchConfig, load_result, make_fitness, search
from lswag.spaces.darts import DartsSpace
from lswag.spaces.nb201 import OPS
from lswag.store import Store

NB201 = spaces.get("nb201")
TINY = {"C": 4, "N": 1}


def scoring(proxies=("params",), **kwargs) -> Scoring:
    return Scoring("nb201", tuple(proxies), data="digits", batch_size=8, image_size=8, build=TINY, **kwargs)


def tiny_params(arch) -> float:
    return sum(p.numel() for p in NB201.build(arch, num_classes=10, **TINY).parameters()) / 1e6


def truth_file(tmp_path, n: int = 40, seed: int = 3):
    """A ground truth of ``n`` cells whose accuracy is their count of 3x3 convolutions (and a second column)."""
    cells = NB201.sample(n, seed=seed)
    path = tmp_path / "truth.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["arch_str", "acc", "other"])
        for cell in cells:
            writer.writerow([NB201.format(cell), list(cell).count("nor_conv_3x3"), 100 - list(cell).count("none")])
    return path, [NB201.format(c) for c in cells]


# --- fitness and budgets ------------------------------------------------------------------------

def test_fitness_of_a_proxy_ranks_failures_last():
    rows = [{"nwot": 3.0}, {"nwot": Failure("singular")}, {"nwot": 5.0}, {"nwot": math.nan}]
    assert make_fitness("nwot").pool_scores(rows).tolist() == [3.0, -math.inf, 5.0, -math.inf]


def test_rank_fitness_is_the_mean_rank_over_the_pool():
    rng = np.random.default_rng(0)
    rows = [{"a": float(x), "b": float(y)} for x, y in rng.normal(size=(9, 2))]
    expected = (stats.rankdata([r["a"] for r in rows]) + stats.rankdata([r["b"] for r in rows])) / 2
    assert np.allclose(make_fitness("rank:nwot,zico").pool_scores([{"nwot": r["a"], "zico": r["b"]} for r in rows]),
                       expected)
    rows[4]["a"] = Failure("nan")
    scores = make_fitness("rank:nwot,zico").pool_scores([{"nwot": r["a"], "zico": r["b"]} for r in rows])
    assert scores[4] == -math.inf and np.isfinite(np.delete(scores, 4)).all()


def test_progress_shows_a_proxys_best_value_and_a_pools_best_candidate_by_its_proxies():
    def result(value):
        return type("Result", (), {"value": value, "seconds": 0.0})()

    single, pool = Archive(make_fitness("nwot")), Archive(make_fitness("rank:nwot,zico"))
    assert single.describe_best() == "none yet" and pool.describe_best() == "none yet"
    for arch, nwot, zico in (("a", 3.0, 1.0), ("b", 7.0, 4.0), ("c", Failure("singular"), 9.0), ("d", 5.0, 2.0)):
        single.add(arch, {"nwot": result(nwot)})
        pool.add(arch, {"nwot": result(nwot), "zico": result(zico)})
    assert single.describe_best() == "7"
    # b ranks best of the pool (mean rank 3.5, a number relative to the pool): its proxy values are shown
    assert pool.describe_best() == "nwot 7, zico 4"


@pytest.mark.parametrize("spec,message", [
    ("nope", "unknown fitness 'nope'; valid: a proxy"),
    ("rank:nwot", "at least two proxies"),
    ("rank:nwot,nope", "unknown proxy 'nope'"),
    ("libra", "fitness libra needs a fitted LIBRA"),
])
def test_fitness_errors(spec, message):
    with pytest.raises(LswagError, match=message):
        make_fitness(spec)


def test_budget():
    budget = Budget(min_params=0.1, max_params=0.5)
    assert budget.proxies == ("params",) and budget.admits({"params": 0.3}) and not budget.admits({"params": 0.6})
    assert Budget().proxies == () and Budget(max_flops=3).proxies == ("flops",)
    with pytest.raises(LswagError, match="--min-params 2 is above --max-params 1: no architecture fits"):
        Budget(min_params=2, max_params=1)


# --- strategies -----------------------------------------------------------------------------------

def test_evolution_maximises_the_fitness_within_the_budget_and_resumes_exactly(tmp_path):
    store = tmp_path / "s.sqlite"
    config = SearchConfig(scoring(), fitness="params", population=6, generations=3, parents=3, seed=4,
                          budget=Budget(max_params=0.012))
    first = search(config, store, progress=False)
    assert first.evaluations == len(first.candidates) == len(set(first.candidates)) == 18
    params = {arch: tiny_params(arch) for arch in first.candidates}
    assert all(value <= 0.012 for value in params.values())
    assert first.arch == max(first.candidates, key=lambda a: (params[a], -first.candidates.index(a)))
    assert first.params == pytest.approx(params[first.arch])
    assert first.history == sorted(first.history) and len(first.history) == 3
    # the same search again reads everything from the store and returns the same
    again = search(config, store, progress=False)
    assert again.candidates == first.candidates and again.arch == first.arch
    assert again.scoring_seconds == pytest.approx(first.scoring_seconds)
    # one generation more replays the first three and adds one
    longer = search(SearchConfig(**{**config.__dict__, "generations": 4}), store, progress=False)
    assert longer.candidates[:18] == first.candidates and len(longer.candidates) == 24
    # a result file rebuilds the network
    path = first.save(tmp_path / "found.json")
    saved = load_result(path)
    model = spaces.get(saved["space"]).build(saved["arch"], **saved["build"])
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(first.params)


def test_mutation_with_a_probability_changes_that_share_of_edges():
    rng, parent = __import__("random").Random(0), NB201.parse(13714)
    changed = [sum(a != b for a, b in zip(parent, NB201.mutate(parent, rng, prob=0.5))) for _ in range(2000)]
    assert min(changed) >= 1 and abs(np.mean(changed) - (3 + 0.5 ** 6)) < 0.15   # Binomial(6, ½), 0 -> 1
    assert all(sum(a != b for a, b in zip(parent, NB201.mutate(parent, rng))) == 1 for _ in range(50))


@pytest.mark.parametrize("name", ["nb101", "darts", "nb301", "tnb101_micro", "tnb101_macro", "autoformer-s"])
def test_every_space_mutates_with_a_per_choice_probability(name):
    space, rng = spaces.get(name), __import__("random").Random(1)
    parent = space.sample(1, seed=2)[0]
    children = [space.mutate(parent, rng, prob=0.5) for _ in range(20)]
    assert all(space.parse(space.format(c)) == c for c in children)           # valid architectures
    differ = [space.format(c) != space.format(parent) for c in children]
    assert all(differ) if name != "autoformer-s" else sum(differ) >= 15       # AutoFormer may redraw the same


def test_random_search_draws_distinct_candidates_of_the_truth_and_looks_the_best_up(tmp_path):
    path, cells = truth_file(tmp_path)
    config = SearchConfig(scoring(), strategy="random", fitness="params", evaluations=15, seed=1,
                          truth=TruthSource(str(path), "acc"), more_metrics=("other",))
    result = search(config, tmp_path / "s.sqlite", progress=False)
    assert len(set(result.candidates)) == 15 and set(result.candidates) <= set(cells)
    assert result.arch == max(result.candidates, key=tiny_params)
    cell = NB201.parse(result.arch)
    assert result.truth == {"acc": list(cell).count("nor_conv_3x3"), "other": 100 - list(cell).count("none")}


def test_pruning_by_params_keeps_the_largest_op_on_every_edge(tmp_path):
    # removing an op leaves the most parameters when it is the cheapest; 3x3 convolutions remain
    result = search(SearchConfig(scoring(), strategy="prune", fitness="params"), tmp_path / "s.sqlite", progress=False)
    assert result.arch == NB201.format(("nor_conv_3x3",) * 6)
    assert result.evaluations == 6 * (4 + 3 + 2) and len(result.history) == 3
    assert all(c.startswith("supernet:") for c in result.candidates)
    supernet = NB201.supernet([OPS[1:]] * 6, **TINY)
    assert sum(p.numel() for p in supernet.parameters()) > sum(
        p.numel() for p in NB201.build(result.arch, **TINY).parameters())


@pytest.mark.slow
def test_pruning_a_darts_supernet_keeps_one_op_per_edge_and_two_inputs_per_node(tmp_path, monkeypatch):
    # a DARTS space of two ops keeps the test short: 28 x 2 op candidates, then 2 x (3 + 4 + 5) edges
    space = DartsSpace("darts_two_ops", ("none", "max_pool_3x3", "sep_conv_3x3"), C=2, layers=3, description="test")
    monkeypatch.setitem(spaces._SPACES, space.name, space)
    config = SearchConfig(Scoring(space.name, ("params",), data="digits", batch_size=2, image_size=8),
                          strategy="prune", fitness="params")
    result = search(config, tmp_path / "s.sqlite", progress=False)
    genotype = space.parse(result.arch)
    # removing the separable convolution loses parameters, removing the pooling none: the convolution stays
    assert {op for op, _ in genotype.normal + genotype.reduce} == {"sep_conv_3x3"}
    assert result.evaluations == 28 * 2 + 2 * (3 + 4 + 5) and len(result.history) == 2
    for cell in (genotype.normal, genotype.reduce):
        assert all(len({i for _, i in cell[2 * k:2 * k + 2]}) == 2 for k in range(4))   # two distinct inputs


def test_libra_fitness_is_fitted_on_calibration_archs_of_the_truth(tmp_path):
    path, cells = truth_file(tmp_path)
    config = SearchConfig(scoring(), fitness="libra", population=6, generations=2, parents=3,
                          truth=TruthSource(str(path), "acc"), calibration=12, libra_pool=("params", "l2_norm", "flops"))
    result = search(config, tmp_path / "s.sqlite", progress=False)
    assert len(set(result.calibration)) == 12 and "LIBRA fitted on 12 archs" in result.libra
    assert result.fitness == "libra" and result.arch in cells and "acc" in result.truth
    with Store(tmp_path / "s.sqlite", "nb201") as store:   # the calibration cells were scored with the pool
        assert store.count() >= 12 * 3


def test_libra_calibration_cells_are_not_the_random_search_draws(tmp_path):
    # with one stream for both, random search would rank exactly the cells LIBRA was fitted on
    path, _ = truth_file(tmp_path)
    common = dict(strategy="random", evaluations=12, truth=TruthSource(str(path), "acc"), calibration=12,
                  libra_pool=("params", "l2_norm", "flops"))
    fitted = search(SearchConfig(scoring(), fitness="libra", **common), tmp_path / "s.sqlite", progress=False)
    plain = search(SearchConfig(scoring(), fitness="params", **common), tmp_path / "s.sqlite", progress=False)
    assert plain.candidates == fitted.candidates and len(set(plain.candidates)) == 12   # the search's own draws
    assert len(set(fitted.calibration) & set(fitted.candidates)) < 12


# --- bad input ------------------------------------------------------------------------------------

def test_impossible_budget_is_an_error_before_the_search(tmp_path):
    config = SearchConfig(scoring(), fitness="params", budget=Budget(max_params=1e-4))
    with pytest.raises(LswagError, match=r"no nb201 architecture fits the budget \(params in \[-inf, 0.0001\] M\): "
                                         r"none of \d+ random ones does \(they span params"):
        search(config, tmp_path / "s.sqlite", progress=False)


def test_a_fitness_failing_everywhere_is_an_error(tmp_path):
    # jacov correlates the samples' input Jacobians: a batch of one has no pair
    config = SearchConfig(Scoring("nb201", ("jacov",), data="digits", batch_size=1, gradient_draws=1, image_size=8,
                                  build=TINY),
                          fitness="jacov", population=3, generations=2, parents=2)
    with pytest.raises(LswagError, match="fitness jacov failed on all 3 first candidates: a correlation between "
                                         "samples needs a batch of at least 2; choose another fitness"):
        search(config, tmp_path / "s.sqlite", progress=False)


@pytest.mark.parametrize("args,message", [
    (["--strategy", "greedy"], "argument --strategy: invalid choice: 'greedy' (choose from 'evolution', 'random', 'prune', 'optuna-tpe', 'optuna-nsga2')"),
    (["--fitness", "libra"], "fitness libra is fitted on ground truth: give --truth and --metric"),
    (["--max-params", "0.00001"], "no nb201 architecture fits the budget"),
    (["--min-flops", "5", "--max-flops", "1"], "--min-flops 5.0 is above --max-flops 1.0: no architecture fits"),
    (["--strategy", "prune", "--space", "autoformer-t"], "strategy prune needs a cell space with a supernet"),
    (["--population", "1"], "--population must be an integer at least 2, got 1"),
])
def test_cli_errors(tmp_path, capsys, args, message):
    assert main(["search", "--image-size", "8", "--batch-size", "8", "--store", str(tmp_path / "s.sqlite"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cli_search_prints_and_saves_the_result(tmp_path, capsys):
    out = tmp_path / "found.json"
    assert main(["search", "--fitness", "params", "--population", "4", "--generations", "2", "--parents", "2",
                 "--build", "C=4", "--build", "N=1", "--image-size", "8", "--batch-size", "8",
                 "--store", str(tmp_path / "s.sqlite"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    result = load_result(out)
    assert f"best: {result['arch']}" in printed and "8 candidates evaluated" in printed
    assert result["evaluations"] == 8 and result["build"] == TINY
