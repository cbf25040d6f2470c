"""LIBRA's selection steps on constructed tables whose right choice is known, its scoring,
evaluation, readers and command line."""
import csv
import itertools
import math
from collections import Counter

import numpy as np
import pytest
from scipy import stats

from conftest import shared_file
from lswag import spaces
from lswag.cli import main
from lswag.errors import LswagError
from lswag.libra import (GRADIENT_BASED, GRADIENT_FREE, ScoreTable, bias, evaluate_held_out, fit, information_gains,
                         pair_by_type, read_scores, tolerance_pool, write_evaluation)
from lswag.store import Store


def make_table(truth, columns, proxies=None) -> ScoreTable:
    columns = {name: np.asarray(values, dtype=float) for name, values in columns.items()}
    return ScoreTable("constructed", "acc", tuple(range(len(truth))), np.asarray(truth, dtype=float), columns,
                      tuple(proxies or [c for c in columns if c != "params"]))


def plug_in_entropy(*variables) -> float:
    """Entropy in bits from counting joint values: the textbook formula, independent of lswag.info."""
    counts = Counter(zip(*variables))
    total = sum(counts.values())
    return -sum(c / total * math.log2(c / total) for c in counts.values())


def information_table():
    """y = 4u + v on the full 4 x 4 grid (four copies), proxies whose gain given ``alpha`` = u is known.

    beta = 8u − [v ≥ 2] reveals half of v (1 bit), gamma = 4u − v all of v (2 bits), delta = [u = 3]
    nothing beyond u (0 bits) but ranks far worse; with 64 bins every variable keeps its values apart.
    """
    u, v = (np.array(g, dtype=float).repeat(4) for g in zip(*itertools.product(range(4), range(4))))
    columns = {"alpha": u, "beta": 8 * u - (v >= 2), "gamma": 4 * u - v, "delta": (u == 3).astype(float),
               "params": u + v}
    return make_table(4 * u + v, columns), u, v


def test_z1_is_the_proxy_of_highest_spearman():
    rng = np.random.default_rng(1)
    truth = rng.normal(size=300)
    columns = {f"p{i}": truth + rng.normal(scale=s, size=300) for i, s in enumerate([2.0, 0.3, 1.0, 0.6])}
    columns["params"] = rng.normal(size=300)
    model = fit(make_table(truth, columns))
    expected = max(columns, key=lambda c: stats.spearmanr(columns[c], truth).statistic if c != "params" else -2)
    assert model.choices[0].proxy == expected == "p1"
    assert model.choices[0].spearman == pytest.approx(stats.spearmanr(columns["p1"], truth).statistic)


def test_information_gain_of_the_constructed_proxies_is_known_in_closed_form():
    table, u, v = information_table()
    gains = information_gains(table, "alpha", ["beta", "gamma", "delta"], bins=64)
    assert gains["beta"] == pytest.approx(1.0)
    assert gains["gamma"] == pytest.approx(2.0)
    assert gains["delta"] == pytest.approx(0.0, abs=1e-12)
    y = table.truth
    # the same by counting: H(y | u) − H(y | u, z)
    for name, expected in gains.items():
        z = table.columns[name]
        by_counting = (plug_in_entropy(y, u) - plug_in_entropy(u)) - (plug_in_entropy(y, u, z) - plug_in_entropy(u, z))
        assert expected == pytest.approx(by_counting)


def test_z2_has_the_lowest_information_gain_within_the_tolerance():
    table, _, _ = information_table()
    rho = {c: stats.spearmanr(table.columns[c], table.truth).statistic for c in ("alpha", "beta", "gamma", "delta")}
    assert max(rho, key=rho.get) == "alpha"
    assert rho["alpha"] - 0.1 <= rho["gamma"] < rho["beta"] < rho["alpha"]  # both within 0.1
    assert rho["delta"] < rho["alpha"] - 0.2                                # out, even widened
    model = fit(table, bins=64, third="none")
    assert model.proxies == ("alpha", "beta")         # 1 bit beats gamma's 2; delta's 0 is out of reach
    assert model.choices[1].information_gain == pytest.approx(1.0)
    assert fit(table, bins=64, third="none", second="max_ig").proxies == ("alpha", "gamma")
    wide = fit(table, bins=64, third="none", tolerance=0.5, max_tolerance=0.5)
    assert wide.proxies == ("alpha", "delta")         # a wide enough tolerance admits delta's 0 bits


def test_tolerance_pool_widens_up_to_its_maximum_and_no_further():
    rho = {"a": 0.8, "b": 0.65, "c": 0.4}
    assert tolerance_pool(rho, 0.8, 0.1, exclude=["a"]) == (["b"], pytest.approx(0.2))
    assert tolerance_pool(rho, 0.8, 0.1, exclude=["a", "b"]) == ([], pytest.approx(0.2))
    assert tolerance_pool(rho, 0.8, 0.1, max_tolerance=0.5, exclude=["a", "b"]) == (["c"], pytest.approx(0.4))
    assert tolerance_pool({**rho, "d": 0.75}, 0.8, 0.1, exclude=["a"]) == (["d"], pytest.approx(0.1))
    with pytest.raises(LswagError, match="tolerance"):
        tolerance_pool(rho, 0.8, 0.3, max_tolerance=0.2)


def bias_table(n=3000, seed=0):
    """params = y + n1, so the accuracy's bias is about 1/√2. Three proxies rank y about equally
    well but lean on params differently: ``low`` = y − n1/2, ``match`` = y + n2/2, ``high`` = y + n1/2
    (population biases 0.32, 0.63, 0.95). alpha is the best proxy, beta an affine copy (0 bits)."""
    rng = np.random.default_rng(seed)
    y, n1, n2, n3 = rng.normal(size=(4, n))
    alpha = y + 0.1 * n3
    columns = {"alpha": alpha, "beta": 2 * alpha + 1, "low": y - n1 / 2, "match": y + n2 / 2, "high": y + n1 / 2,
               "params": y + n1}
    return make_table(y, columns)


def test_bias_is_the_pearson_correlation_of_ranks_and_raw_is_pearson_of_values():
    table = bias_table()
    feature = table.columns["params"]
    for name in ("low", "match", "high"):
        values = table.columns[name]
        ranks_pearson = np.corrcoef(stats.rankdata(values), stats.rankdata(feature))[0, 1]
        assert bias(values, feature) == pytest.approx(ranks_pearson)
        assert bias(values, feature, "raw") == pytest.approx(np.corrcoef(values, feature)[0, 1])
    assert bias(table.truth, feature) == pytest.approx(1 / math.sqrt(2), abs=0.03)


def test_bias_ignores_archs_without_the_feature_and_ranks_failures_last():
    values = np.array([1.0, 2.0, np.nan, 4.0, 5.0])
    feature = np.array([1.0, 2.0, 3.0, np.nan, 5.0])
    # the 4th arch has no feature; the failure (3rd) ranks below all: ranks [2, 3, 1, 4] vs [1, 2, 3, 4]
    assert bias(values, feature) == pytest.approx(np.corrcoef([2, 3, 1, 4], [1, 2, 3, 4])[0, 1])
    assert bias(values, feature, "raw") == pytest.approx(1.0)  # raw drops the failure: 1, 2, 5 vs 1, 2, 5


def test_z3_matches_the_accuracy_bias_and_the_ablations_pick_as_designed():
    table = bias_table()
    model = fit(table, tolerance=0.2)
    assert model.proxies[:2] == ("alpha", "beta")
    assert model.choices[1].information_gain == pytest.approx(0.0, abs=1e-12)
    biases = {c: model_bias for c, model_bias in
              ((c, bias(table.columns[c], table.columns["params"])) for c in ("low", "match", "high"))}
    closest = min(biases, key=lambda c: abs(biases[c] - model.accuracy_bias))
    assert model.proxies[2] == closest == "match"
    assert fit(table, tolerance=0.2, third="minimisation").proxies[2] == "low"
    assert fit(table, tolerance=0.2, third="none").proxies == ("alpha", "beta")
    drawn = {fit(table, tolerance=0.2, third="random", seed=s).proxies[2] for s in range(12)}
    assert drawn == {"low", "match", "high"}


def test_pairs_by_proxy_type():
    rng = np.random.default_rng(3)
    truth = rng.normal(size=200)
    quality = {"nwot": 0.2, "params": 0.5, "flops": 0.9, "snip": 0.3, "synflow": 0.4, "grasp": 1.5}
    columns = {name: truth + rng.normal(scale=s, size=200) for name, s in quality.items()}
    table = make_table(truth, columns, proxies=list(quality))
    assert {"nwot", "params", "flops"} <= GRADIENT_FREE and {"snip", "synflow", "grasp"} <= GRADIENT_BASED
    assert pair_by_type(table, "free").proxies == ("nwot", "params")
    assert pair_by_type(table, "based").proxies == ("snip", "synflow")
    assert pair_by_type(table, "free+based").proxies == ("nwot", "snip")
    assert len(set(pair_by_type(table, "random", seed=5).proxies)) == 2
    assert pair_by_type(make_table(truth, {"nwot": columns["nwot"], "snip": columns["snip"],
                                           "params": columns["params"]}, ["nwot", "snip"]), "free") is None


def test_rank_sum_and_product_scores():
    table = bias_table(n=50)
    model = fit(table, tolerance=0.2)
    chosen = [table.columns[p] for p in model.proxies]
    assert np.allclose(model.score(table.columns), sum(stats.rankdata(c) for c in chosen))
    product = fit(table, tolerance=0.2, combination="product")
    expected = np.prod([(c - c.min()) / (c.max() - c.min()) for c in chosen], axis=0)
    assert np.allclose(product.score(table.columns), expected)
    pool = {p: np.array([table.columns[p][0], np.nan]) for p in model.proxies}
    assert product.score(pool)[1] == 0.0                    # a failure scores 0 in the product
    assert model.score(pool)[1] == len(model.proxies)       # and ranks last (rank 1) in every column
    with pytest.raises(LswagError, match="needs the proxies"):
        model.score({"alpha": [1.0, 2.0]})


def test_explain_names_every_choice_with_its_statistics():
    model = fit(bias_table(n=400), tolerance=0.2)
    text = model.explain()
    for choice in model.choices:
        assert choice.proxy in text and f"{choice.spearman:+.3f}" in text and f"{choice.bias:+.3f}" in text
    assert "IG 0.000b" in text and "bias closest to the accuracy's" in text


def test_a_constant_proxy_is_no_candidate_and_is_noted():
    table = bias_table(n=100)
    table.columns["dead"] = np.full(100, np.nan)
    model = fit(ScoreTable(table.source, table.metric, table.archs, table.truth, table.columns,
                           table.proxies + ("dead",)), tolerance=0.2)
    assert "dead" not in model.proxies and any("dead" in note for note in model.notes)


def test_a_constant_candidate_is_skipped_and_every_table_says_why(tmp_path):
    table = bias_table(n=120)
    # tcet is a candidate and T-CET a method of the comparison: constant, it ranks nothing
    table.columns["tcet"] = np.full(120, 16.0)
    table.columns["flat"] = np.where(np.arange(120) < 118, 16.0, np.nan)   # constant where it did not fail
    table = ScoreTable(table.source, table.metric, table.archs, table.truth, table.columns,
                       table.proxies + ("tcet", "flat"))
    evaluation = evaluate_held_out(table, calibration=40, splits=2, tolerance=0.2)
    assert not {"tcet", "flat"} & set(evaluation.libra.proxies)
    explained = evaluation.libra.explain()
    assert "tcet is no candidate (constant: 16 for all 120)" in explained
    assert "flat is no candidate (constant: 16 for 118, 2 failed)" in explained
    line = next(line for line in evaluation.table().splitlines() if line.startswith("T-CET"))
    assert "constant: 16 for all 120" in line and "nan" not in line
    path, _ = write_evaluation(evaluation, tmp_path)
    with open(path) as f:
        rows = {row["method"]: row for row in csv.DictReader(f)}
    assert rows["T-CET"]["note"] == "constant: 16 for all 120"
    assert "tcet is no candidate" in rows["LIBRA"]["note"]
    with pytest.raises(LswagError, match=r"target constant: 1 for all 120\)$"):
        fit(ScoreTable(table.source, table.metric, table.archs, np.ones(120), table.columns, table.proxies))


def test_evaluation_in_sample_and_held_out():
    table = bias_table(n=400)
    table.columns["oracle"] = table.truth * 3
    table = ScoreTable(table.source, table.metric, table.archs, table.truth, table.columns,
                       table.proxies + ("oracle",))
    evaluation = evaluate_held_out(table, calibration=60, splits=4, seed=2, tolerance=0.2)
    best = evaluation.result("best single proxy")
    assert best.in_sample == pytest.approx(1.0) and best.held_out == pytest.approx(1.0)
    assert best.held_out_chosen == {"oracle": 4}
    libra = evaluation.result("LIBRA")
    in_sample_model = fit(table, tolerance=0.2, seed=2)
    assert libra.in_sample == pytest.approx(stats.spearmanr(in_sample_model.score(table.columns), table.truth).statistic)
    assert libra.chosen == "+".join(in_sample_model.proxies) == "+".join(evaluation.libra.proxies)
    assert sum(libra.held_out_chosen.values()) == 4
    assert evaluation.result("z1+z2 + bias-matching z3").held_out == pytest.approx(libra.held_out)
    average = evaluation.result("rank average (all proxies)")
    ranks = sum(stats.rankdata(table.columns[p]) for p in table.proxies)
    assert average.in_sample == pytest.approx(stats.spearmanr(ranks, table.truth).statistic)
    with pytest.raises(LswagError, match="calibration"):
        evaluate_held_out(table, calibration=399)


def test_ensembles_and_tcet_join_the_comparison_when_their_values_are_in_the_table():
    rng = np.random.default_rng(4)
    truth = rng.normal(size=120)
    names = ["az_expressivity", "az_progressivity", "az_trainability", "az_complexity", "te_ntk_cond",
             "te_linear_regions", "tcet", "params"]
    columns = {name: truth + rng.normal(size=120) for name in names}
    evaluation = evaluate_held_out(make_table(truth, columns), calibration=40, splits=2)
    methods = {r.method for r in evaluation.results}
    assert {"AZ-NAS", "TE-NAS", "T-CET"} <= methods
    az = sum(np.log(stats.rankdata(columns[c]) / 120) for c in names[:4])
    assert evaluation.result("AZ-NAS").in_sample == pytest.approx(stats.spearmanr(az, truth).statistic)
    assert "AZ-NAS" not in {r.method for r in evaluate_held_out(bias_table(n=120), calibration=40, splits=2).results}


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def test_read_scores_selects_task_rows_and_turns_the_sentinel_into_a_failure(tmp_path):
    path = tmp_path / "scores.csv"
    write_csv(path, ["task", "arch_str", "val_metric", "val_accuracy", "snip", "params", "snip_time"],
              [["jigsaw", "a", "top1", 1.0, 5.0, 2.0, 0.1], ["jigsaw", "b", "top1", 2.0, -100000000.0, 3.0, 0.1],
               ["normal", "a", "ssim", 0.5, 7.0, 2.0, 0.1], ["jigsaw", "c", "top1", 3.0, "", 4.0, 0.1]])
    table = read_scores(path, metric="val_accuracy", dataset="jigsaw")
    assert table.archs == ("a", "b", "c") and table.truth.tolist() == [1.0, 2.0, 3.0]
    assert table.columns["snip"][0] == 5.0 and np.isnan(table.columns["snip"][1:]).all()
    assert table.proxies == ("snip", "params")  # val_metric is text, snip_time a timing
    with pytest.raises(LswagError, match="needs dataset=; tasks present: jigsaw, normal"):
        read_scores(path, metric="val_accuracy")
    with pytest.raises(LswagError, match="unknown metric 'acc'"):
        read_scores(path, metric="acc", dataset="jigsaw")


def test_read_scores_joins_an_lswag_store_with_its_truth(tmp_path):
    space = spaces.get("nb201")
    archs = [space.format(space.parse(str(i))) for i in (0, 5, 77, 1601, 9000)]
    with Store(tmp_path / "runs.sqlite", "nb201") as store:
        for i, arch in enumerate(archs[:4]):  # the last arch was never scored
            store.add(arch, [("snip", {"s": 1}, float(i), 0.1), ("nwot", {"s": 1}, float(-i), 0.1)])
    write_csv(tmp_path / "truth.csv", ["arch_str", "acc", "params"],
              [[a, 10.0 + i, 0.5 * i] for i, a in enumerate(archs)])
    table = read_scores(tmp_path / "runs.sqlite", truth=tmp_path / "truth.csv", metric="acc")
    assert [space.format(a) for a in table.archs] == archs[:4]
    assert table.proxies == ("nwot", "snip") and table.columns["snip"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert table.columns["params"].tolist() == [0.0, 0.5, 1.0, 1.5] and table.truth.tolist() == [10, 11, 12, 13]
    with pytest.raises(LswagError, match="give --truth"):
        read_scores(tmp_path / "runs.sqlite", metric="acc")
    with Store(tmp_path / "runs.sqlite", "nb201") as store:  # snip again, on other data
        for i, arch in enumerate(archs[:3]):
            store.add(arch, [("snip", {"data": "other"}, 9.0 - i, 0.1)])
    with pytest.raises(LswagError, match=r"snip under 2 settings \(data: None, other; s: 1, None\); choose one with --setting"):
        read_scores(tmp_path / "runs.sqlite", truth=tmp_path / "truth.csv", metric="acc")
    chosen = read_scores(tmp_path / "runs.sqlite", truth=tmp_path / "truth.csv", metric="acc", setting={"s": "1"})
    assert chosen.columns["snip"].tolist() == [0.0, 1.0, 2.0, 3.0]
    other = read_scores(tmp_path / "runs.sqlite", truth=tmp_path / "truth.csv", metric="acc", setting={"data": "o*"})
    assert other.proxies == ("snip",) and other.columns["snip"].tolist() == [9.0, 8.0, 7.0]
    # a proxy-scoped setting picks snip's variant and keeps nwot, which has no such setting
    scoped = read_scores(tmp_path / "runs.sqlite", truth=tmp_path / "truth.csv", metric="acc",
                         setting={"snip:data": "o*"})
    assert scoped.proxies == ("nwot", "snip") and scoped.columns["snip"].tolist() == [9.0, 8.0, 7.0]
    assert scoped.columns["nwot"].tolist() == [0.0, -1.0, -2.0]
    with Store(tmp_path / "more.sqlite", "nb201") as store:  # a second store adds a proxy
        for i, arch in enumerate(archs):
            store.add(arch, [("zico", {"s": 1}, 10.0 * i, 0.1)])
    both = read_scores([tmp_path / "runs.sqlite", tmp_path / "more.sqlite"], truth=tmp_path / "truth.csv",
                       metric="acc", setting={"s": "1"})
    assert both.proxies == ("nwot", "snip", "zico") and both.columns["zico"].tolist() == [0.0, 10.0, 20.0, 30.0]
    with Store(tmp_path / "more.sqlite", "nb201") as store:  # a proxy being added, on 2 archs so far
        for arch in archs[:2]:
            store.add(arch, [("synflow", {"s": 1}, 1.0, 0.1)])
    with pytest.raises(LswagError, match=r"only 2 archs .* \(archs per proxy, fewest first: synflow 2, nwot 4, snip 4\)"):
        read_scores([tmp_path / "runs.sqlite", tmp_path / "more.sqlite"], truth=tmp_path / "truth.csv",
                    metric="acc", setting={"s": "1"})
    chosen = read_scores([tmp_path / "runs.sqlite", tmp_path / "more.sqlite"], truth=tmp_path / "truth.csv",
                         metric="acc", setting={"s": "1"}, proxies=["snip", "zico"])
    assert chosen.proxies == ("snip", "zico") and len(chosen) == 4 and "nwot" not in chosen.columns
    # snip, held under 2 settings, is neither read nor an error when only nwot is asked for
    alone = read_scores(tmp_path / "runs.sqlite", truth=tmp_path / "truth.csv", metric="acc", proxies=["nwot"])
    assert alone.proxies == ("nwot",) and alone.columns["nwot"].tolist() == [0.0, -1.0, -2.0, -3.0]
    with pytest.raises(LswagError, match="unknown proxy 'fisher'"):
        read_scores(tmp_path / "runs.sqlite", truth=tmp_path / "truth.csv", metric="acc", setting={"s": "1"},
                    proxies=["fisher"])
    with pytest.raises(LswagError, match="nwot is in both"):
        read_scores([tmp_path / "runs.sqlite", tmp_path / "runs.sqlite"], truth=tmp_path / "truth.csv",
                    metric="acc", setting={"s": "1"})


def test_cli_prints_the_choices_and_the_comparison_and_writes_csv_and_plot(tmp_path, capsys):
    table = bias_table(n=150)
    path = tmp_path / "scores.csv"
    names = list(table.columns)
    write_csv(path, ["arch_str", "acc", *names],
              [[f"arch{i}", table.truth[i], *(table.columns[c][i] for c in names)] for i in range(150)])
    code = main(["libra", "--scores", str(path), "--metric", "acc", "--calibration", "50", "--splits", "3",
                 "--tolerance", "0.2", "--out", str(tmp_path / "out")])
    printed = capsys.readouterr().out
    assert code == 0
    assert "z1 alpha" in printed and "z3 match" in printed and "best single proxy" in printed
    with open(tmp_path / "out" / "libra.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["method"] == "LIBRA" and rows[0]["chosen_in_sample"] == "alpha+beta+match"
    assert (tmp_path / "out" / "libra.png").stat().st_size > 0
    assert main(["libra", "--scores", str(path), "--metric", "acc", "--bias", "flops"]) == 2
    assert "unknown bias feature 'flops'; valid choices:" in capsys.readouterr().err
    assert main(["libra", "--scores", str(path), "--metric", "acc", "--setting", "data"]) == 2
    assert "a setting is KEY=VALUE" in capsys.readouterr().err


def test_write_evaluation_rows_match_the_results(tmp_path):
    evaluation = evaluate_held_out(bias_table(n=120), calibration=40, splits=2, tolerance=0.2)
    table, figure = write_evaluation(evaluation, tmp_path)
    with open(table) as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == [r.method for r in evaluation.results]
    assert float(rows[0]["held_out_mean"]) == pytest.approx(evaluation.results[0].held_out)
    assert figure.exists()


@pytest.mark.realdata
def test_on_suite_zero_nb201_z1_is_the_best_proxy_by_scipy():
    path = shared_file("benchmarks/nasbench201/nb201_suite0_partial_13proxies.csv")
    table = read_scores(path, metric="val_accuracy", dataset="cifar100")
    assert len(table) == 725
    model = fit(table)
    rho = {p: stats.spearmanr(np.nan_to_num(table.columns[p], nan=-np.inf), table.truth).statistic
           for p in table.proxies}
    assert model.choices[0].proxy == max(rho, key=rho.get)
    assert len(model.proxies) == 3
