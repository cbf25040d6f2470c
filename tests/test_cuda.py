"""The commands on a GPU (``--device cuda``): score, bench, search and train run there, store their
results under CUDA keys and agree with the CPU. Marked ``cuda``: skipped where PyTorch sees no GPU
(CI); ``benchmarks/gpu.py`` runs them on a lent one."""
from __future__ import annotations

import csv
import json

import pytest
import torch

from lswag import spaces
from lswag.bench import BenchConfig, run_bench
from lswag.cli import main
from lswag.settings import Scoring, TruthSource

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU: PyTorch sees none here")]

NB201 = spaces.get("nb201")
TINY = ["--build", "C=8", "--build", "N=1", "--image-size", "16", "--batch-size", "16"]
#: proxies whose values involve no 1/σ: CPU and GPU agree to float rounding
STEADY = ("params", "flops", "nwot", "synflow", "grad_norm", "snip")


def truth_file(tmp_path, n: int = 12):
    cells = [NB201.format(c) for c in NB201.sample(n, seed=2)]
    path = tmp_path / "truth.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["arch_str", "acc"])
        writer.writerows([cell, float(i)] for i, cell in enumerate(cells))
    return path


def test_score_runs_on_the_gpu(capsys):
    arch = NB201.format(NB201.sample(1, seed=0)[0])
    assert main(["score", "--arch", arch, "--proxies", ",".join(STEADY), "--device", "cuda", "--format", "json",
                 *TINY]) == 0
    gpu = {r["proxy"]: r["value"] for r in json.loads(capsys.readouterr().out)["results"]}
    assert main(["score", "--arch", arch, "--proxies", ",".join(STEADY), "--device", "cpu", "--format", "json",
                 *TINY]) == 0
    cpu = {r["proxy"]: r["value"] for r in json.loads(capsys.readouterr().out)["results"]}
    assert gpu == pytest.approx(cpu, rel=1e-3)


def test_bench_stores_gpu_results_under_gpu_keys(tmp_path):
    truth = truth_file(tmp_path)
    setup = Scoring("nb201", STEADY, batch_size=16, image_size=16, build={"C": 8, "N": 1}, device="cuda")
    gpu = run_bench(BenchConfig(setup, TruthSource(str(truth), "acc"), n=12), tmp_path / "s.sqlite", progress=False)
    assert all(s["device"] == "cuda" for s in setup.store_keys().values())
    cpu_setup = Scoring("nb201", STEADY, batch_size=16, image_size=16, build={"C": 8, "N": 1}, device="cpu")
    cpu = run_bench(BenchConfig(cpu_setup, TruthSource(str(truth), "acc"), n=12), tmp_path / "s.sqlite",
                    progress=False)
    for on_gpu, on_cpu in zip(gpu, cpu):
        assert on_gpu.archs == on_cpu.archs
        assert [str(v) for v in on_gpu.scores if not isinstance(v, float)] == \
               [str(v) for v in on_cpu.scores if not isinstance(v, float)]
        assert [v for v in on_gpu.scores if isinstance(v, float)] == pytest.approx(
            [v for v in on_cpu.scores if isinstance(v, float)], rel=1e-3)


def test_search_scores_on_the_gpu(tmp_path, capsys):
    truth = truth_file(tmp_path)
    assert main(["search", "--strategy", "random", "--evaluations", "6", "--fitness", "nwot", "--device", "cuda",
                 "--truth", str(truth), "--metric", "acc", "--store", str(tmp_path / "s.sqlite"),
                 "--out", str(tmp_path / "r.json"), *TINY]) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["settings"]["scoring"]["device"] == "cuda" and len(result["candidates"]) == 6


def test_train_runs_on_the_gpu(tmp_path, capsys):
    arch = NB201.format(NB201.sample(1, seed=0)[0])
    assert main(["train", "--arch", arch, "--build", "C=8", "--build", "N=1", "--image-size", "8", "--epochs", "1",
                 "--device", "cuda", "--checkpoint", str(tmp_path / "c.pt")]) == 0
    assert "test accuracy" in capsys.readouterr().out
