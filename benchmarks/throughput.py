"""NB201 cells per second through ``lswag bench`` with 1 and 2 local workers and a local Ray instance.

Each configuration scores the same ``--n`` seeded cells (CIFAR-10 sample, batch ``--batch-size``)
with ``--proxies`` into a fresh store, timed end to end (reading the truth table and starting the pool or Ray included), and
prints cells/s and the hours the whole space of 15,625 cells would take at that rate: issue 8's
throughput target (all of NB201 with l_swag in under 2 hours on 2 CPU cores; 1000 cells with
the full zoo in under 1 hour). It also checks that every configuration stored the same values.

    python benchmarks/throughput.py --n 200 --workers 1 2 --ray
    python benchmarks/throughput.py --n 50 --proxies all --workers 2      # the full zoo
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from lswag.bench import BenchConfig, run_bench

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
NB201_CELLS = 15_625


def timed_bench(config: BenchConfig, store: Path, workers: int, executor: str) -> tuple[float, list]:
    start = time.perf_counter()
    reports = run_bench(config, store, workers=workers, executor=executor, progress=False)
    return time.perf_counter() - start, reports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="cells scored per configuration")
    parser.add_argument("--proxies", default="l_swag")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="local pool sizes to time")
    parser.add_argument("--ray", action="store_true", help="also time a local Ray instance of max(--workers) CPUs")
    parser.add_argument("--truth", default=str(SHARED / "benchmarks/nasbench201/nb201_groundtruth.csv"))
    parser.add_argument("--data", default=f"npz:{SHARED / 'images/cifar10_sample.npz'}")
    args = parser.parse_args()
    config = BenchConfig(space="nb201", truth=args.truth, metric="cifar10_test_acc_200ep", n=args.n,
                         proxies=tuple(args.proxies.split(",")), data=args.data, batch_size=args.batch_size)
    runs = [(f"local, {w} worker{'s' * (w > 1)}", w, "local") for w in args.workers]
    if args.ray:
        runs.append((f"ray, {max(args.workers)} CPUs", max(args.workers), "ray"))
    print(f"NB201, {args.n} cells, proxies {args.proxies}, batch {args.batch_size}")
    print(f"{'executor':<20} {'seconds':>8} {'cells/s':>8} {'s/cell':>7} {'15,625 cells':>13}")
    reference = None
    with tempfile.TemporaryDirectory() as folder:
        for index, (label, workers, executor) in enumerate(runs):
            seconds, reports = timed_bench(config, Path(folder) / f"run{index}.sqlite", workers, executor)
            values = {r.proxy: r.scores for r in reports}
            reference = reference or values
            same = "" if values == reference else "   VALUES DIFFER from the first run"
            print(f"{label:<20} {seconds:8.1f} {args.n / seconds:8.2f} {seconds / args.n:7.2f} "
                  f"{NB201_CELLS * seconds / args.n / 3600:11.2f} h{same}")


if __name__ == "__main__":
    main()
