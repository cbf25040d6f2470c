"""Peak resident memory of one scoring worker at issue 8's sizes, each case in a fresh process.

A worker is what ``lswag bench`` runs per process: ``lswag.engine.score_architecture`` on one batch. Each
case below is scored in a new spawned process (so no high-water mark carries over), and the
process's peak resident set (``lswag.engine.peak_memory_mb``: Linux ``ru_maxrss``) is printed next to the
issue's target and the process's resident memory before it scored (torch and lswag imported, batch
made). Cases are the largest network of each space, where memory peaks:

* NB201, every edge a 3x3 conv (the most activations), batch 64, 32x32: l_swag and the whole zoo;
  target < 4 GB per worker;
* AutoFormer-S, the largest grid config (E 448, depth 14, MLP ratio 4, 7 heads: 34.8M parameters),
  batch 64, 224x224: l_swag; target < 12 GB.

The batch is Gaussian noise of the right shape: memory depends on the shapes, not on the pixels.

    python benchmarks/memory.py                 # a few minutes on 2 CPU cores
    python benchmarks/memory.py --batch-scale 0.125 --cases nb201:l_swag   # smoke run
"""
from __future__ import annotations

import argparse
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

import torch

NB201_LARGEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
AUTOFORMER_S_LARGEST = "448/" + ",".join(["4.0"] * 14) + "/" + ",".join(["7"] * 14)
CASES = {  # name: (space, architecture, batch, proxies, target GB)
    "nb201:l_swag": ("nb201", NB201_LARGEST, 64, "l_swag", 4),
    "nb201:all": ("nb201", NB201_LARGEST, 64, "all", 4),
    "autoformer-s:l_swag": ("autoformer-s", AUTOFORMER_S_LARGEST, 64, "l_swag", 12),
}


def _child(space_name: str, arch: str, batch_size: int, proxies: str, threads: int) -> tuple:
    import lswag
    from lswag.engine import peak_memory_mb, score_architecture
    from lswag.scoring import resolve_proxies
    from lswag.settings import Scoring

    def resident_gb() -> float:
        return peak_memory_mb() * 2**20 / 1e9

    torch.set_num_threads(threads)
    space = lswag.spaces.get(space_name)
    batch = lswag.load_batch("gaussian", batch_size=batch_size, image_size=space.input_shape[1:],
                             num_classes=space.num_classes)
    before = resident_gb()
    start = time.perf_counter()
    _, results = score_architecture(Scoring(space_name, tuple(resolve_proxies(proxies))), arch, batch=batch)
    failed = [r.name for r in results if r.failed]
    return before, resident_gb(), time.perf_counter() - start, len(results), failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--batch-scale", type=float, default=1.0, help="multiply every batch (smoke runs)")
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    print(f"torch {torch.__version__}, {args.threads} threads, one fresh process per case")
    print(f"{'case':<22} {'batch':>5} {'before':>8} {'peak':>8} {'target':>7} {'seconds':>8}  proxies")
    for name in args.cases:
        space, arch, batch, proxies, target = CASES[name]
        batch = max(2, round(batch * args.batch_scale))
        with ProcessPoolExecutor(1, mp_context=context) as fresh:   # one new process per case
            before, peak, seconds, scored, failed = fresh.submit(
                _child, space, arch, batch, proxies, args.threads).result()
        verdict = "met" if peak < target else "MISSED"
        note = f"; failed: {', '.join(failed)}" if failed else ""
        print(f"{name:<22} {batch:5d} {before:6.2f} GB {peak:6.2f} GB {target:5d} GB {seconds:8.1f}  "
              f"{scored} scored{note}  ({verdict})")


if __name__ == "__main__":
    main()
