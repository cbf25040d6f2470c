"""The result store and ``lswag bench``: resumable, keyed by settings, parallel, killable."""
from __future__ import annotations

import csv
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import torch
from scipy.stats import spearmanr

import lswag
from lswag.bench import BenchConfig, run_bench
from lswag.settings import Execution, Scoring, TruthSource
from lswag.engine import sample_archs
from lswag.errors import LswagError
from lswag.proxies import Failure
from lswag.store import Store

SPACE = lswag.spaces.get("nb201")
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
SETTINGS = {"data": "digits", "batch_size": 8, "seed": 0, "options": {}}


@pytest.fixture(autouse=True)
def one_thread():
    # 2-core CI machine: one torch thread keeps the parent from fighting its worker processes
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def truth_file(tmp_path, n=10):
    """A tiny truth CSV: n NB201 cells (the all-none cell among them) with made-up accuracies."""
    cells = [SPACE.format(c) for c in SPACE.sample(n - 1, seed=3)] + [ALL_NONE]
    path = tmp_path / "truth.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["arch_str", "acc"])
        for i, cell in enumerate(cells):
            writer.writerow([cell, 10.0 if cell == ALL_NONE else 50.0 + i])
    return path


def config(truth, n: int = 6, **changes):
    """A bench of ``n`` cells of the truth file against its ``acc``, scored as ``changes`` say."""
    base = dict(space="nb201", seed=0, proxies=("params", "zico"), batch_size=8)
    return BenchConfig(Scoring(**{**base, **changes}), TruthSource(str(truth), "acc"), n)


def table(store_path, settings_filter=None):
    with sqlite3.connect(store_path) as db:
        rows = db.execute("SELECT arch, proxy, settings_id, value, failure FROM results ORDER BY arch, proxy")
        return [r for r in rows if settings_filter is None or r[2] == settings_filter]


# --------------------------------------------------------------------------- store

def test_store_round_trip_and_no_duplicates(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path, "nb201") as store:
        store.add("a", [("zico", SETTINGS, 1.5, 0.2), ("nwot", SETTINGS, Failure("singular"), 0.1)], 100.0)
        store.add("a", [("zico", SETTINGS, 9.9, 0.2)])               # already there: ignored, not overwritten
        assert set(store.results("zico", SETTINGS)) == {"a"}
        assert set(store.results("zico", {**SETTINGS, "seed": 1})) == set()
        got = store.results("nwot", SETTINGS)["a"]
        assert got.value == Failure("singular") and got.seconds == 0.1 and got.peak_memory_mb == 100.0
        assert store.results("zico", SETTINGS)["a"].value == 1.5
        store.add("a", [("zico", {**SETTINGS, "batch_size": 16}, 2.5, 0.3)])   # new setting: a new row
        assert store.count() == 3
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with Store(path, "nb201") as reopened:
        assert reopened.results("zico", SETTINGS)["a"].value == 1.5


def test_store_rejects_foreign_files(tmp_path):
    text = tmp_path / "notes.sqlite"
    text.write_text("not a database at all, just some text that is long enough" * 20)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE t (x)")
    for path, words in ((text, "not an lswag store"), (other, "not an lswag store")):
        with pytest.raises(LswagError, match=words) as error:
            Store(path, "nb201")
        assert "\n" not in str(error.value)
    Store(tmp_path / "ok.sqlite", "nb201").close()
    with pytest.raises(LswagError, match="holds space 'nb201', not 'nb101'"):
        Store(tmp_path / "ok.sqlite", "nb101")


# --------------------------------------------------------------------------- bench

def test_sample_is_seeded_and_order_independent(tmp_path):
    cells = SPACE.sample(30, seed=1)
    assert sample_archs(cells, SPACE, 10, 5) == sample_archs(list(reversed(cells)), SPACE, 10, 5)
    assert sample_archs(cells, SPACE, 10, 5) != sample_archs(cells, SPACE, 10, 6)
    assert len(set(sample_archs(cells, SPACE, 10, 5))) == 10


def test_bench_scores_resumes_and_keys_settings(tmp_path):
    truth, store = truth_file(tmp_path), tmp_path / "run.sqlite"
    reports = run_bench(config(truth, n=10), store, progress=False)
    assert [r.proxy for r in reports] == ["params", "zico"]
    assert all(r.correlation.n == 10 for r in reports)
    zico = next(r for r in reports if r.proxy == "zico")
    assert zico.correlation.failures == 1                         # the all-none cell, recorded and ranked last
    rows = table(store)
    assert len(rows) == 20
    assert any(r[4] and "gradient" in r[4] for r in rows if r[1] == "zico")

    # the reported rho is scipy's on the stored values against the truth file
    with open(truth) as f:
        accuracy = {row["arch_str"]: float(row["acc"]) for row in csv.DictReader(f)}
    stored = {arch: value for arch, proxy, _, value, _ in rows if proxy == "params"}
    assert stored == {a: sum(p.numel() for p in SPACE.build(a).parameters()) / 1e6 for a in stored}
    expected = spearmanr([stored[a] for a in stored], [accuracy[a] for a in stored]).statistic
    assert next(r for r in reports if r.proxy == "params").correlation.spearman == pytest.approx(expected, abs=1e-12)
    again = run_bench(config(truth, n=10), store, progress=False)
    assert table(store) == rows                                   # nothing recomputed or duplicated
    assert [r.correlation for r in again] == [r.correlation for r in reports]

    run_bench(config(truth, n=10, batch_size=16), store, progress=False)
    assert len(table(store)) == 40                                # a changed setting is a new result


def test_store_key_names_the_channels_last_layout_where_the_space_uses_it():
    nb201 = Scoring("nb201", ("zico",), image_size=32).store_keys()["zico"]
    assert nb201["memory_format"] == "channels_last"     # NB201 scores channels-last on CPU: its values differ
    tnb = Scoring("tnb101_micro", ("zico",), image_size=32).store_keys()["zico"]
    assert "memory_format" not in tnb                     # the default layout keeps the keys of earlier stores
    assert {k: v for k, v in nb201.items() if k != "memory_format"} == tnb


def test_workers_give_the_same_results(tmp_path):
    truth = truth_file(tmp_path)
    run_bench(config(truth), tmp_path / "one.sqlite", progress=False)
    run_bench(config(truth), tmp_path / "two.sqlite", Execution(workers=2), progress=False)
    strip = [(a, p, s, v, f) for a, p, s, v, f in table(tmp_path / "one.sqlite")]
    assert strip == table(tmp_path / "two.sqlite") and len(strip) == 12


def test_pool_ensembles_are_reported_when_their_components_are_scored(tmp_path):
    from lswag.ensembles import AZ_NAS, TE_NAS, combine

    truth = truth_file(tmp_path)
    reports = run_bench(config(truth, proxies=AZ_NAS + TE_NAS, batch_size=4,
                               options={"te_ntk_cond": {"samples": 4}}), tmp_path / "s.sqlite", progress=False)
    by_name = {r.proxy: r for r in reports}
    assert set(by_name) == set(AZ_NAS + TE_NAS) | {"az_nas", "te_nas"}
    archs = by_name["az_nas"].archs
    for name, components in (("az_nas", AZ_NAS), ("te_nas", TE_NAS)):
        pool = {arch: {c: by_name[c].scores[i] for c in components} for i, arch in enumerate(archs)}
        assert by_name[name].scores == [combine(name, pool)[arch] for arch in archs]
    # with a component missing, no ensemble row
    partial = run_bench(config(truth, proxies=("te_ntk_cond",), batch_size=4, options={"te_ntk_cond": {"samples": 4}}),
                        tmp_path / "s.sqlite", progress=False)
    assert [r.proxy for r in partial] == ["te_ntk_cond"]


@pytest.mark.slow
def test_ray_gives_the_same_results(tmp_path):
    pytest.importorskip("ray", reason="Ray is the optional extra lswag[ray]; install it to test the Ray executor")
    truth = truth_file(tmp_path)
    run_bench(config(truth), tmp_path / "one.sqlite", progress=False)
    run_bench(config(truth), tmp_path / "ray.sqlite", Execution(workers=2, executor="ray"), progress=False)
    reference = table(tmp_path / "one.sqlite")
    assert table(tmp_path / "ray.sqlite") == reference and len(reference) == 12


def test_executor_errors(tmp_path):
    truth = truth_file(tmp_path)
    with pytest.raises(LswagError, match="unknown executor 'dask'; valid choices: local, ray"):
        run_bench(config(truth), tmp_path / "s.sqlite", Execution(executor="dask"), progress=False)
    with pytest.raises(LswagError, match="needs --executor ray"):
        run_bench(config(truth), tmp_path / "s.sqlite", Execution(ray_address="auto"), progress=False)


def test_unreachable_ray_cluster_fails_fast(tmp_path):
    pytest.importorskip("ray", reason="Ray is the optional extra lswag[ray]; install it to test the Ray executor")
    truth = truth_file(tmp_path)
    with pytest.raises(LswagError, match="cannot reach the Ray cluster at 127.0.0.1:1: "):
        run_bench(config(truth), tmp_path / "s.sqlite", Execution(executor="ray", ray_address="127.0.0.1:1"),
                  progress=False)


def bench_command(truth, store, n):
    return [sys.executable, "-m", "lswag.cli", "bench", "--truth", str(truth), "--metric", "acc",
            "--n", str(n), "--batch-size", "8", "--proxies", "params,zico,nwot", "--store", str(store)]


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_same_table(tmp_path):
    truth = truth_file(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    reference = tmp_path / "reference.sqlite"
    done = subprocess.run(bench_command(truth, reference, 10), capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr

    killed = tmp_path / "killed.sqlite"
    process = subprocess.Popen(bench_command(truth, killed, 10), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if killed.exists():
            try:
                with sqlite3.connect(killed) as db:
                    if db.execute("SELECT COUNT(*) FROM results").fetchone()[0] >= 6:
                        break
            except sqlite3.OperationalError:
                pass                                               # created but not yet initialised
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = table(killed)
    assert 0 < len(partial) < 30, "the run was not interrupted midway; make it longer"
    assert len(partial) % 3 == 0                                   # an architecture lands whole or not at all

    resumed = subprocess.run(bench_command(truth, killed, 10), capture_output=True, text=True, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert table(killed) == table(reference) and len(table(killed)) == 30
    # the same printed table, timings aside (the first line and the last column are seconds)
    without_seconds = [line.rsplit(None, 1)[0] for line in resumed.stdout.splitlines()[1:]]
    assert without_seconds == [line.rsplit(None, 1)[0] for line in done.stdout.splitlines()[1:]]


@pytest.mark.slow
def test_bench_errors_are_one_line(tmp_path):
    truth = truth_file(tmp_path)
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE t (x)")
    cases = [
        (["--store", str(foreign)], "not an lswag store"),
        (["--metric", "nope"], "nope"),
        (["--truth", str(tmp_path / "missing.csv")], "missing.csv"),
        (["--proxies", "bogus"], "bogus"),
    ]
    for changes, words in cases:
        argv = bench_command(truth, tmp_path / "s.sqlite", 3)
        for flag, value in zip(changes[::2], changes[1::2]):
            argv[argv.index(flag) + 1] = value
        result = subprocess.run(argv, capture_output=True, text=True)
        assert result.returncode == 2, (changes, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0] and "Traceback" not in result.stderr, result.stderr


@pytest.mark.realdata
@pytest.mark.slow
def test_real_nb201_bench_params_and_l_swag_correlate(tmp_path):
    from conftest import shared_file

    truth = shared_file("benchmarks/nasbench201/nb201_groundtruth.csv")
    images = shared_file("images/cifar10_sample.npz")
    torch.set_num_threads(2)
    reports = run_bench(BenchConfig(Scoring("nb201", ("params", "l_swag"), data=f"npz:{images}", batch_size=32),
                                    TruthSource(str(truth), "cifar10_test_acc_200ep"), n=100),
                        tmp_path / "real.sqlite", progress=False)
    rho = {r.proxy: r.correlation.spearman for r in reports}
    assert rho["params"] > 0.5 and rho["l_swag"] > 0.5, rho


def test_outputs_table_figures_and_combined_heatmap(tmp_path, capsys):
    from lswag.bench import read_tables, write_outputs
    from lswag.cli import main

    truth = truth_file(tmp_path)
    reports = run_bench(config(truth), tmp_path / "s.sqlite", progress=False)
    table_path = write_outputs(reports, tmp_path / "a", benchmark="acc")
    write_outputs(reports[:1], tmp_path / "b", benchmark="other")
    for name in ("heatmap.png", "ranks_params.png", "ranks_zico.png"):
        assert (tmp_path / "a" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rho = read_tables([table_path, tmp_path / "b" / "correlations.csv"])
    assert rho == {"params": {"acc": reports[0].correlation.spearman, "other": reports[0].correlation.spearman},
                   "zico": {"acc": reports[1].correlation.spearman}}
    assert main(["heatmap", str(table_path), str(tmp_path / "b" / "correlations.csv"),
                 "--out", str(tmp_path / "fig3.png")]) == 0
    assert (tmp_path / "fig3.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["heatmap", str(truth), "--out", str(tmp_path / "x.png")]) == 2
    assert "not an lswag correlations.csv" in capsys.readouterr().err


def test_a_proxy_constant_over_the_pool_is_reported_as_such(tmp_path, capsys):
    from lswag.bench import TABLE_COLUMNS, read_tables
    from lswag.cli import main

    # four Gaussian images: every cell gives each its own activation pattern, so the count is 4 for all
    assert main(["bench", "--truth", str(truth_file(tmp_path)), "--metric", "acc", "--n", "6", "--batch-size", "4",
                 "--data", "gaussian", "--proxies", "te_linear_regions,params", "--store", str(tmp_path / "s.sqlite"),
                 "--out", str(tmp_path / "out")]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "constant: 4 for all 6" in rows["te_linear_regions"] and "nan" not in rows["te_linear_regions"]
    assert "constant" not in rows["params"]
    with open(tmp_path / "out" / "correlations.csv", newline="") as f:
        table = {row["proxy"]: row for row in csv.DictReader(f)}
    assert table["te_linear_regions"]["note"] == "constant: 4 for all 6" and table["params"]["note"] == ""
    # tables written before the note column still read
    old = tmp_path / "old.csv"
    with open(old, "w", newline="") as f:
        writer = csv.DictWriter(f, TABLE_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(table.values())
    assert read_tables([old])["params"] == read_tables([tmp_path / "out" / "correlations.csv"])["params"]
    assert math.isnan(read_tables([old])["te_linear_regions"]["acc"])


def test_layer_analysis_agrees_with_bench_and_proposes_a_wide_window(tmp_path, capsys):
    from lswag.cli import main
    from lswag.layers import MIN_WIDTH, _spike_window, analyse_layers

    truth = truth_file(tmp_path)
    analysis = analyse_layers(Scoring("nb201", batch_size=8), n=8, truth=TruthSource(str(truth), "acc"),
                              progress=False)
    reports = run_bench(config(truth, n=8, proxies=("l_swag",), options={"l_swag": {"window": (1, 10)}}),
                        tmp_path / "s.sqlite", progress=False)
    assert analysis.rho_window[(1, 10)] == pytest.approx(reports[0].correlation.spearman, abs=1e-12)
    low, high = analysis.proposed
    assert high - low + 1 >= MIN_WIDTH
    assert analysis.rho_window[analysis.proposed] == max(
        rho for (a, b), rho in analysis.rho_window.items() if b - a + 1 >= MIN_WIDTH)
    assert len(analysis.mean_psi) == 10 and all(s >= 0 for s in analysis.std_psi)
    # the paper's rule without ground truth: the run above the median around the peak
    assert _spike_window([1, 2, 5, 6, 9, 3, 1, 0, 7, 2]) == (3, 6)   # median 2.5
    assert main(["layers", "--n", "4", "--batch-size", "8", "--out", str(tmp_path / "fig")]) == 0
    assert (tmp_path / "fig" / "layer_profile.png").read_bytes()[:4] == b"\x89PNG"
    assert "proposed window" in capsys.readouterr().out
    assert main(["layers", "--n", "4", "--truth", str(truth)]) == 2
