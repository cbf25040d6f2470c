"""NB201 cells per second through ``lswag bench`` with 1 and 2 local workers and a local Ray instance.

Each configuration scores the same ``--n`` seeded cells (CIFAR-10 sample, batch ``--batch-size``)
with ``--proxies`` into a fresh store, timed end to end (reading the truth table and starting the pool or Ray included), and
prints cells/s and the hours the whole space of 15,625 cells would take at that rate: issue 8's
throughput target (all of NB201 with l_swag in under 2 hours on 2 CPU cores; 1000 cells with
the full zoo in under 1 hour). It also prints how far each configuration's values are from the first's: a worker of N gets
cores/N torch threads, and a different thread count sums in a different order, so values may
differ in the last bits (the largest relative difference is printed; failures must match).
The last row is the bare cost of the same cells in this process: build each network and run one
plain forward+backward on the batch (bench_passes' floor, in the layout lswag scores the space
in), no proxy: what any proxy needing a gradient costs at least.

    python benchmarks/throughput.py --n 200 --workers 1 2 --ray
    python benchmarks/throughput.py --n 50 --proxies all --workers 2      # the full zoo
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import lswag
from bench_passes import batch_in_layout, floor, layout_of
from lswag.bench import BenchConfig, run_bench
from lswag.settings import Execution, Scoring, TruthSource

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
NB201_CELLS = 15_625


def timed_bench(config: BenchConfig, store: Path, workers: int, executor: str) -> tuple[float, list]:
    start = time.perf_counter()
    reports = run_bench(config, store, Execution(workers=workers, executor=executor), progress=False)
    return time.perf_counter() - start, reports


def largest_difference(values: dict, reference: dict) -> float:
    """The largest relative difference between two runs' scores (inf where one failed and not the other)."""
    largest = 0.0
    for proxy, scores in reference.items():
        for mine, theirs in zip(values[proxy], scores):
            if isinstance(mine, float) and isinstance(theirs, float):
                largest = max(largest, abs(mine - theirs) / max(abs(mine), abs(theirs), 1e-300))
            elif mine != theirs:
                return float("inf")
    return largest


def timed_floors(config: BenchConfig, archs: list[str]) -> float:
    """Seconds to build each of ``archs`` (the cells a bench run scored) and run one forward+backward of it."""
    setup = config.scoring
    space = setup.search_space
    batch = lswag.load_batch(setup.data, batch_size=setup.batch_size, seed=setup.seed,
                             image_size=space.input_shape[1:])
    layout = layout_of(setup.space)
    batch = batch_in_layout(batch, layout)
    start = time.perf_counter()
    for arch in archs:
        model = space.build(space.parse(arch), num_classes=batch.num_classes, seed=setup.seed)
        floor(model.to(memory_format=layout), batch)
    return time.perf_counter() - start


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
    config = BenchConfig(Scoring("nb201", tuple(args.proxies.split(",")), data=args.data, batch_size=args.batch_size),
                         TruthSource(args.truth, "cifar10_test_acc_200ep"), n=args.n)
    runs = [(f"local, {w} worker{'s' * (w > 1)}", w, "local") for w in args.workers]
    if args.ray:
        runs.append((f"ray, {max(args.workers)} CPUs", max(args.workers), "ray"))

    def row(label: str, seconds: float, note: str = "") -> None:
        print(f"{label:<20} {seconds:8.1f} {args.n / seconds:8.2f} {seconds / args.n:7.2f} "
              f"{NB201_CELLS * seconds / args.n / 3600:11.2f} h{note}")

    print(f"NB201, {args.n} cells, proxies {args.proxies}, batch {args.batch_size}")
    print(f"{'executor':<20} {'seconds':>8} {'cells/s':>8} {'s/cell':>7} {'15,625 cells':>13}")
    reference = None
    with tempfile.TemporaryDirectory() as folder:
        for index, (label, workers, executor) in enumerate(runs):
            seconds, reports = timed_bench(config, Path(folder) / f"run{index}.sqlite", workers, executor)
            values = {r.proxy: r.scores for r in reports}
            reference = reference or values
            row(label, seconds, f"   largest relative difference to the first: "
                                f"{largest_difference(values, reference):.1e}" if index else "")
    row("bare build+floor", timed_floors(config, reports[0].archs), "   (no proxy, this process)")


if __name__ == "__main__":
    main()
