"""Smoke runs of the measuring scripts under benchmarks/ at tiny sizes: they run and print their
figures (the measurements themselves are docs/performance.md's, never a timed test)."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import shared_file

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
    assert seconds > 0 and abs(rate - 3 / seconds) < 0.02
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
