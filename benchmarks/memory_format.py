"""Channels-last against the default memory format on CPU: what it saves and how far values move.

``lswag`` scores a space's networks in the channels-last layout on CPU when the space says so
(``SearchSpace.memory_format``: NB201, NB101, DARTS/NB301, where this script measured it
faster). For ``--n`` seeded architectures of ``--space`` this script scores ``--proxies`` three
ways in one process: the default layout with torch's threads, channels-last with the same
threads, and the default layout with one thread (a different summation order and no layout
change: the noise any change of thread count already brings). It prints each way's seconds per
architecture and, per proxy, the median and largest relative difference to the first way, the
Spearman between the ways' scores and, with ``--truth``, each way's Spearman with the ground truth.

    python benchmarks/memory_format.py --space nb201 --n 100 \\
        --truth ../shared/benchmarks/nasbench201/nb201_groundtruth.csv --metric cifar10_test_acc_200ep
    python benchmarks/memory_format.py --space darts --n 5 --proxies l_swag      # speed only
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

import lswag
from lswag.truth import load_truth
from lswag.engine import score_architecture
from lswag.settings import Scoring
from lswag.scoring import resolve_proxies

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
WAYS = (("default layout", torch.contiguous_format, None),
        ("channels-last", torch.channels_last, None),
        ("default, 1 thread", torch.contiguous_format, 1))


def score_all(setup: Scoring, archs: list, batch, memory_format, threads: int | None) -> tuple[float, dict]:
    """Seconds per architecture and {proxy: [value or None]} for ``archs`` scored one way."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    values: dict[str, list] = {}
    start = time.perf_counter()
    try:
        for arch in archs:
            _, results = score_architecture(setup, arch, batch=batch, memory_format=memory_format)
            for result in results:
                values.setdefault(result.name, []).append(result.value if isinstance(result.value, float) else None)
    finally:
        torch.set_num_threads(before)
    return (time.perf_counter() - start) / len(archs), values


def scored_pairs(mine: list, reference: list) -> list[tuple[float, float]]:
    """The (mine, reference) values of the architectures both ways scored."""
    return [(a, b) for a, b in zip(mine, reference) if a is not None and b is not None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="nb201")
    parser.add_argument("--n", type=int, default=100, help="architectures (seeded sample of the space)")
    parser.add_argument("--proxies", default="l_swag,zico,nwot,swap,grad_norm")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--data", default=f"npz:{SHARED / 'images/cifar10_sample.npz'}")
    parser.add_argument("--truth", help="ground-truth table: also print each way's Spearman with it")
    parser.add_argument("--metric", default="cifar10_test_acc_200ep")
    args = parser.parse_args()
    space = lswag.spaces.get(args.space)
    if args.truth:
        truth = load_truth(args.truth, space=args.space, metric=args.metric)
        archs = [truth.archs()[i] for i in np.random.default_rng(0).choice(len(truth), args.n, replace=False)]
        accuracy = [truth.accuracy[arch] for arch in archs]
    else:
        archs = space.sample(args.n, seed=0)
    batch = lswag.load_batch(args.data, batch_size=args.batch_size, seed=0, image_size=space.input_shape[1:])
    setup = Scoring(args.space, tuple(resolve_proxies(args.proxies)))
    score_architecture(setup, archs[0], batch=batch)     # warm-up
    print(f"{args.space}, {args.n} architectures, batch {args.batch_size}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    runs = [(label, *score_all(setup, archs, batch, fmt, threads)) for label, fmt, threads in WAYS]
    reference_seconds, reference = runs[0][1], runs[0][2]
    for label, seconds, _ in runs:
        print(f"  {label:<18} {seconds:7.3f} s per architecture  ({reference_seconds / seconds:.2f}x the default's speed)")
    header = f"{'proxy':<12} {'way':<18} {'median rel. diff':>17} {'largest':>9} {'Spearman to default':>20}"
    print("\n" + header + ("  Spearman with truth" if args.truth else ""))
    for proxy in reference:
        for label, _, values in runs:
            paired = scored_pairs(values[proxy], reference[proxy])
            differences = np.array([abs(a - b) / max(abs(a), abs(b), 1e-300) for a, b in paired])
            agreement = spearmanr(*zip(*paired))[0] if len(paired) > 2 else float("nan")
            line = (f"{proxy:<12} {label:<18} {np.median(differences):17.2e} {differences.max():9.2e} "
                    f"{agreement:20.4f}")
            if args.truth:
                kept = [(v, a) for v, a in zip(values[proxy], accuracy) if v is not None]
                line += f"  {spearmanr(*zip(*kept))[0]:19.4f}"
            print(line)


if __name__ == "__main__":
    main()
