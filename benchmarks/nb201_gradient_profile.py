"""The paper's window heuristic on NB201: mean ± std over random cells of Ψ per depth percentile.

L-SWAG's paper (Sec. 3.1, Fig. 2b and 9) places its layer window where this curve spikes; it
needs no ground truth. One ``draws`` probe per cell.

    python benchmarks/nb201_gradient_profile.py --n 200 --data npz:../shared/images/cifar10_sample.npz
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from tqdm import tqdm

import lswag
from lswag import probe
from lswag.proxies import ProxyFailure
from lswag.proxies.lswag import trainability_profile


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default="digits")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    space = lswag.spaces.get("nb201")
    batch = lswag.load_batch(args.data, batch_size=args.batch_size, seed=args.seed, image_size=args.image_size)
    curves = []
    for arch in tqdm(space.sample(args.n, seed=args.seed), desc="cells"):
        model = space.build(arch, num_classes=batch.num_classes, seed=args.seed)
        try:
            curve = trainability_profile(probe.record(model, batch, {"draws"}))
        except ProxyFailure:
            continue
        if curve:  # a cell with no input-output path has no varying gradient, hence no curve
            curves.append(curve)
    print(f"{len(curves)} of {args.n} cells with a gradient profile ({args.data}, batch {args.batch_size})")
    print("percentile  mean Ψ   std Ψ   cells")
    for p in range(1, 11):
        values = np.array([c[p] for c in curves if p in c])
        print(f"{p:>10}  {values.mean():7.3f} {values.std():7.3f}   {len(values)}")


if __name__ == "__main__":
    main()
