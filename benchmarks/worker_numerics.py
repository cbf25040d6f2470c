"""Do stored proxy values depend on the number of workers? The same bench, run several ways, compared.

``lswag bench`` is run as a user runs it (a fresh process each, torch's default threads: no
``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` passed on) with one worker, ``--workers 2`` and, when Ray
is installed, ``--executor ray --workers 2``, each into a fresh store under ``--out``. The stores
are then compared with the first run's, proxy by proxy, over the architectures both scored: how
many values are bit-identical, the median and largest relative difference, how many
architectures changed rank, and each run's Spearman ρ with the ground truth (as the bench
printed it). Every run's wall seconds are printed too (the machine may be shared: they are
indicative; ``--timing`` measures the thread count's cost interleaved).

    nice python benchmarks/worker_numerics.py                 # the 60 NB201 cells of issue 32
    nice python benchmarks/worker_numerics.py --runs 1 2      # without Ray
    nice python benchmarks/worker_numerics.py --timing 2 --runs   # only the timing

``--timing R`` scores the same architectures in this process R times, one thread against all of
torch's threads (``os.cpu_count()``), alternating cell by cell (the order swapped every other
cell) so that a busy machine slows both alike, and prints the seconds per cell of each. It sets
``lswag.engine.SCORING_THREADS``, the thread count the engine scores with, where the engine has
one, and torch's thread count otherwise (an lswag before issue 32, which scored with the
caller's threads).
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scipy.stats import rankdata

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TRUTH = SHARED / "benchmarks" / "nasbench201" / "nb201_groundtruth.csv"
IMAGES = SHARED / "images" / "cifar10_sample.npz"
#: the environment variables that would fix torch's thread count in the runs: left out, as a user has none
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def bench_argv(args, run: str, store: Path) -> list[str]:
    """The ``lswag bench`` command of one run: ``"1"``, ``"2"`` (local workers) or ``"ray2"``."""
    workers = run.removeprefix("ray")
    argv = [sys.executable, "-m", "lswag.cli", "bench", "--space", "nb201", "--truth", str(args.truth),
            "--metric", args.metric, "--n", str(args.n), "--proxies", args.proxies, "--data", f"npz:{args.images}",
            "--batch-size", str(args.batch_size), "--store", str(store), "--workers", workers, "--format", "json"]
    return argv + (["--executor", "ray"] if run.startswith("ray") else [])


def run_bench(args, run: str, store: Path) -> tuple[dict, float]:
    """The bench's JSON report and the run's wall seconds, into a fresh ``store``."""
    for stale in store.parent.glob(store.name + "*"):
        stale.unlink()
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    start = time.perf_counter()
    done = subprocess.run(bench_argv(args, run, store), check=False, capture_output=True, text=True,
                          env=env)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"run {run} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout), seconds


def stored_values(store: Path) -> dict[str, dict[str, float | None]]:
    """``{proxy: {arch: value, or None for a failure}}`` of a store holding one settings per proxy."""
    out: dict[str, dict[str, float | None]] = {}
    with sqlite3.connect(store) as db:
        for arch, proxy, value in db.execute("SELECT arch, proxy, value FROM results"):
            out.setdefault(proxy, {})[arch] = value
    return out


def compare(mine: dict[str, float | None], reference: dict[str, float | None]) -> dict:
    """Identical values, relative differences and rank moves over the architectures both scored."""
    archs = sorted(a for a in reference if a in mine and mine[a] is not None and reference[a] is not None)
    a = [reference[x] for x in archs]
    b = [mine[x] for x in archs]
    relative = [abs(y - x) / abs(x) if x != 0 else (0.0 if y == 0 else float("inf")) for x, y in zip(a, b)]
    moved = sum(int(r != s) for r, s in zip(rankdata(a, method="min"), rankdata(b, method="min")))
    return {"archs": len(archs), "identical": sum(x == y for x, y in zip(a, b)), "max": max(relative, default=0.0),
            "median": statistics.median(relative) if relative else 0.0, "moved": moved,
            "failures": (sum(v is None for v in reference.values()), sum(v is None for v in mine.values())),
            "only_one": len(set(reference) ^ set(mine))}


def timing(args) -> None:
    """Seconds per cell with one thread and with every core's thread, interleaved cell by cell."""
    import torch

    from lswag import engine
    from lswag.settings import Scoring, TruthSource

    setup = Scoring("nb201", tuple(args.proxies.split(",")), data=f"npz:{args.images}", batch_size=args.batch_size)
    truth = TruthSource(str(args.truth), args.metric).load(setup.space)
    archs = [setup.search_space.format(a) for a in
             engine.sample_archs(truth.archs(), setup.search_space, args.n, setup.seed)]   # as bench samples
    counts = sorted({1, os.cpu_count() or 1})
    caller = torch.get_num_threads()

    def use(threads: int) -> None:
        if hasattr(engine, "SCORING_THREADS"):
            engine.SCORING_THREADS = threads
        torch.set_num_threads(threads)

    use(counts[0])
    prepared = engine.Prepared(setup, setup.batch())
    prepared.score(prepared.network(archs[0]), setup.names)      # warm-up
    seconds = {t: 0.0 for t in counts}
    for repeat in range(args.timing):
        for i, arch in enumerate(archs):
            order = counts if (i + repeat) % 2 == 0 else counts[::-1]
            for threads in order:
                use(threads)
                start = time.perf_counter()
                prepared.score(prepared.network(arch), setup.names)
                seconds[threads] += time.perf_counter() - start
    torch.set_num_threads(caller)
    cells = args.timing * len(archs)
    print(f"timing: {len(archs)} cells x {args.timing} repeats in this process, interleaved, "
          f"torch {torch.__version__}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the end")
    for threads in counts:
        print(f"  {threads} thread{'s' if threads > 1 else ''}: {seconds[threads] / cells:.3f} s per cell")
    if len(counts) == 2:
        print(f"  one thread costs {seconds[1] / seconds[counts[1]] - 1:+.1%} against {counts[1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--truth", type=Path, default=TRUTH)
    parser.add_argument("--metric", default="cifar10_test_acc_200ep")
    parser.add_argument("--images", type=Path, default=IMAGES)
    parser.add_argument("--n", type=int, default=60)
    parser.add_argument("--proxies", default="zico,l_swag")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--runs", nargs="*", default=None,
                        help="the runs, the first the reference: 1, 2 (local workers), ray2 (Ray, 2 CPUs); "
                             "default 1 2 and ray2 where Ray is installed")
    parser.add_argument("--out", type=Path, default=None, help="folder of the stores (default: a temporary one)")
    parser.add_argument("--timing", type=int, default=0, metavar="R",
                        help="also time one thread against all cores' threads in this process, R repeats")
    args = parser.parse_args()
    if args.runs is None:
        try:
            import ray  # noqa: F401
            args.runs = ["1", "2", "ray2"]
        except ImportError:
            args.runs = ["1", "2"]

    import lswag
    print(f"lswag {lswag.__version__}, {args.n} NB201 cells, {args.proxies}, batch {args.batch_size}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start")
    with tempfile.TemporaryDirectory() as temporary:
        folder = args.out or Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        reports, values = {}, {}
        for run in args.runs:
            store = folder / f"workers_{run}.sqlite"
            reports[run], seconds = run_bench(args, run, store)
            values[run] = stored_values(store)
            rho = {p["proxy"]: p["spearman"] for p in reports[run]["proxies"]}
            print(f"run {run:>4}: {seconds:6.1f} s wall ({reports[run]['seconds']:.1f} s scoring); ρ "
                  + ", ".join(f"{proxy} {rho[proxy]:.4f}" for proxy in args.proxies.split(",")))
        reference = args.runs[0] if args.runs else None
        for run in args.runs[1:]:
            for proxy in args.proxies.split(","):
                c = compare(values[run][proxy], values[reference][proxy])
                print(f"{run:>4} vs {reference}: {proxy:<7} {c['identical']}/{c['archs']} identical, relative "
                      f"difference median {c['median']:.3g}, max {c['max']:.3g}; {c['moved']}/{c['archs']} ranks "
                      f"moved; failed {c['failures'][0]} and {c['failures'][1]}, in one store only {c['only_one']}")
    if args.timing:
        timing(args)


if __name__ == "__main__":
    main()
