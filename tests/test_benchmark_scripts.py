"""Smoke runs of the measuring scripts under benchmarks/ at tiny sizes: they run and print their
figures (the measurements themselves are docs/performance.md's, never a timed test)."""
from __future__ import annotations

import csv
import itertools
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import shared_file

from lswag.bench import TABLE_COLUMNS

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.slow
def test_scaling_script_prints_a_finite_slope_per_proxy(tmp_path):
    figure = tmp_path / "scaling.png"
    run = subprocess.run([sys.executable, str(BENCHMARKS / "scaling.py"), "--no-vit", "--batches", "4", "8",
                          "--cells", "2", "--repeats", "1", "--proxies", "l_swag,nwot", "--plot", str(figure)],
                         capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})   # one thread: no spin-waiting beside other jobs
    assert run.returncode == 0, run.stderr[-2000:]
    slopes = [line.split()[1:] for line in run.stdout.splitlines() if line.strip().startswith("slope")]
    assert len(slopes) == 2                              # batch sweep and size sweep of NB201
    assert all(len(row) == 3 and all(math.isfinite(float(v)) for v in row) for row in slopes)
    assert figure.stat().st_size > 0


@pytest.mark.realdata
@pytest.mark.slow
def test_throughput_script_reports_a_rate_per_executor():
    shared_file("benchmarks/nasbench201/nb201_groundtruth.csv")
    shared_file("images/cifar10_sample.npz")
    run = subprocess.run([sys.executable, str(BENCHMARKS / "throughput.py"), "--n", "3", "--workers", "1", "2",
                          "--batch-size", "8"], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-2000:]
    row = next(line for line in run.stdout.splitlines() if line.startswith("local, 1 worker"))
    seconds, rate = float(row.split()[3]), float(row.split()[4])
    # seconds is printed to 0.1 s and the rate to 0.01 cells/s: the rate must lie within what those roundings allow
    assert seconds > 0.05 and 3 / (seconds + 0.05) - 0.005 <= rate <= 3 / (seconds - 0.05) + 0.005
    two = next(line for line in run.stdout.splitlines() if line.startswith("local, 2 workers"))
    assert float(two.split()[-1]) < 1e-4                 # the same values up to float rounding
    bare = next(line for line in run.stdout.splitlines() if line.startswith("bare build+floor"))
    assert 0 < float(bare.split()[2]) < seconds      # building and one pass cost less than scoring


def test_memory_script_reports_a_peak_per_case():
    run = subprocess.run([sys.executable, str(BENCHMARKS / "memory.py"), "--cases", "nb201:l_swag",
                          "--batch-scale", "0.05", "--threads", "1"], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-2000:]
    row = next(line for line in run.stdout.splitlines() if line.startswith("nb201:l_swag")).split()
    batch, before, peak = int(row[1]), float(row[2]), float(row[4])
    assert batch == 3 and 0 < before <= peak and "1 scored" in " ".join(row)


@pytest.mark.slow
def test_memory_format_script_times_both_layouts_and_compares_values():
    run = subprocess.run([sys.executable, str(BENCHMARKS / "memory_format.py"), "--space", "nb201", "--n", "3",
                          "--batch-size", "8", "--proxies", "nwot,grad_norm", "--data", "digits"],
                         capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-2000:]
    timings = [line.split() for line in run.stdout.splitlines() if "s per architecture" in line]
    assert len(timings) == 3 and all(float(row[row.index("s") - 1]) > 0 for row in timings)
    nwot = next(line.split() for line in run.stdout.splitlines() if line.startswith("nwot") and "channels-last" in line)
    assert float(nwot[3]) < 1e-5                         # largest relative difference: patterns do not move


@pytest.mark.slow
def test_lswag_options_script_scores_a_task_network_as_the_library_does(tmp_path):
    import csv

    import torch

    import lswag
    from lswag.data import load_batch
    from lswag.engine import score_architecture
    from lswag.settings import Scoring

    micro = lswag.spaces.get("tnb101_micro")
    archs = [micro.format(a) for a in micro.sample(4, seed=2)]
    truth = tmp_path / "truth.csv"
    with open(truth, "w", newline="") as f:
        csv.writer(f).writerows([["arch_str", "normal"]] + [[a, 40.0 + 3 * i % 5] for i, a in enumerate(archs)])
    out = tmp_path / "options.csv"
    run = subprocess.run([sys.executable, str(BENCHMARKS / "lswag_options.py"), "--space", "tnb101_micro",
                          "--truth", str(truth), "--metric", "normal", "--build", "task=normal", "--n", "4",
                          "--data", "digits", "--image-size", "32", "--batch-size", "4", "--baselines", "zico",
                          "--out", str(out)], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert "l_swag tnb101_micro window [1,10] feeding  sum  draws" in run.stdout
    with open(out) as f:
        rows = {row["arch"]: row for row in csv.DictReader(f)}
    assert sorted(rows) == sorted(archs)
    batch = load_batch("digits", batch_size=4, seed=0, image_size=32)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)    # as the script ran: Ψ = ln Σ 1/σ moves by 1% with the threads' rounding here
    try:
        _, results = score_architecture(Scoring("tnb101_micro", ("l_swag", "zico"), build={"task": "normal"}),
                                        archs[0], batch=batch)
    finally:
        torch.set_num_threads(threads)
    assert float(rows[archs[0]]["l_swag[1-10,feeding,sum,draws]"]) == pytest.approx(results[0].value, rel=1e-9)
    assert float(rows[archs[0]]["zico"]) == pytest.approx(results[1].value, rel=1e-9)
    chosen = subprocess.run([sys.executable, str(BENCHMARKS / "choose_window.py"), str(out)],
                            capture_output=True, text=True, timeout=300)
    assert chosen.returncode == 0, chosen.stderr[-2000:]
    assert "fold 1: picked" in chosen.stdout


def test_spaces_report_prints_a_run_beside_suite_zero_and_the_paper(tmp_path):
    shared_file("benchmarks/transnasbench101_micro/tnb101_micro_suite0_partial_13proxies.csv")
    run_folder = tmp_path / "tnb101_micro_normal"
    run_folder.mkdir()
    with open(run_folder / "correlations.csv", "w", newline="") as f:
        table = csv.writer(f)
        table.writerow(TABLE_COLUMNS)
        table.writerows([["normal", "l_swag", 500, 0, 0.6646, 0.6078, 0.7121, 0.47, 0.42, 0.51, 2.4],
                         ["normal", "nwot", 500, 3, 0.5754, 0.50, 0.64, 0.40, 0.35, 0.45, 0.5]])
    run = subprocess.run([sys.executable, str(BENCHMARKS / "spaces_report.py"), "--runs", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.splitlines()
    assert "| l_swag | 0.665 [0.61, 0.71] |" in lines
    assert "| nwot | 0.575 [0.50, 0.64] (3 failed) |" in lines
    # Suite-Zero scored nwot on its own sample of the task, not l_swag
    start = lines.index("### tnb101_micro: Suite-Zero on its own sample") + 4
    suite_zero = list(itertools.takewhile(lambda line: line.startswith("|"), lines[start:]))
    assert [line.split("|")[1].strip() for line in suite_zero] == ["nwot"]
    assert -1 <= float(suite_zero[0].split("|")[2]) <= 1
    assert "Tab. 3, 1000 archs): normal 0.75; over all layers (Tab. 5, ALL): normal 0.68." in run.stdout


def test_pareto_search_measures_fronts_against_the_true_front():
    """benchmarks/pareto_search.py's hypervolume of (cost, accuracy) points, against rectangles summed by
    hand, and its gap to the true front."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import pareto_search
    finally:
        sys.path.pop(0)
    table = [(1.0, 50.0), (2.0, 70.0), (3.0, 65.0), (4.0, 90.0), (2.0, 60.0)]
    reference = (5.0, 40.0)     # the highest cost, the lowest accuracy
    # the true front is (1, 50), (2, 70), (4, 90): the area below it and above the reference, left of cost 5
    by_hand = (5 - 1) * (50 - 40) + (5 - 2) * (70 - 50) + (5 - 4) * (90 - 70)
    assert pareto_search.true_volume(table, reference) == pytest.approx(by_hand)
    assert pareto_search.true_volume([(3.0, 65.0)], reference) == pytest.approx((5 - 3) * (65 - 40))
    assert pareto_search.gap((3.0, 65.0), table) == pytest.approx(5.0)      # (2, 70) is cheaper and better
    assert pareto_search.gap((4.0, 90.0), table) == 0.0
