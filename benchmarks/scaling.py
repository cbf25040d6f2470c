"""How a proxy's cost grows with the batch and with the network (issue 8, scaling curve).

Times, in one run on this machine, one plain forward+backward (the floor) and each of
``--proxies`` (each alone, ``lswag.evaluate``, medians of ``--repeats``), in the memory format
lswag scores each space in on CPU (channels-last for NB201):

* against the batch size (``--batches``, 16 32 64 128 by default) on NB201 cell #13714 at 32×32
  and on the smallest AutoFormer-Small subnet at 224² (batches of at most ``--vit-max-batch``);
* against the network size at batch 32: ``--cells`` sampled NB201 cells, and AutoFormer-Small
  subnets from the smallest to the largest of the grid (batch ``--vit-batch``).

It prints the seconds, the fitted log-log slope of time against batch (1: linear, 2: quadratic)
and of time against parameters, and draws both curves in one figure (``--plot``).

    python benchmarks/scaling.py --plot runs/scaling.png
    python benchmarks/scaling.py --batches 8 16 --cells 2 --vit-batch 2 --repeats 1 --proxies l_swag   # smoke run
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

import lswag
from lswag.scoring import evaluate, space_options
from lswag.spaces.autoformer import ViTConfig

from bench_passes import batch_in_layout, floor, layout_of, median_seconds   # this folder: run as a script

NB201_CELL = "13714"


def costs(model, batch, proxies, repeats, space: str) -> dict[str, float]:
    """Seconds of the floor and of each proxy alone on ``batch``, in the layout lswag scores ``space`` in and
    with the options it gives the proxy there (NB201: l_swag's window [4, 7])."""
    layout = layout_of(space)
    model, batch = model.to(memory_format=layout), batch_in_layout(batch, layout)
    runs = {"floor": lambda: floor(model, batch)}
    runs.update({name: (lambda name=name: evaluate(model, batch, [name], memory_format=layout,
                                                   options=space_options(lswag.spaces.get(space), [name])))
                 for name in proxies})
    for run in runs.values():
        run()                                                # warm-up: allocator, lazy inits
    return {name: median_seconds(run, repeats) for name, run in runs.items()}


def slope(x, y) -> float:
    """Exponent k of y ∝ x^k, least squares in log-log."""
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def sweep(label, rows, key_name, proxies) -> None:
    print(f"\n{label}")
    if len(rows) < 2:
        print("  fewer than two points: no slope")
        return
    print(f"{key_name:>12} " + " ".join(f"{name:>10}" for name in ["floor", *proxies]) + "   (seconds)")
    for key, times in rows:
        print(f"{key:>12,} " + " ".join(f"{times[name]:10.3f}" for name in ["floor", *proxies]))
    slopes = {name: slope([k for k, _ in rows], [t[name] for _, t in rows]) for name in ["floor", *proxies]}
    print(f"{'slope':>12} " + " ".join(f"{slopes[name]:10.2f}" for name in ["floor", *proxies]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proxies", default="l_swag,nwot,jacov,zico")
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--cells", type=int, default=8, help="NB201 cells of the size sweep")
    parser.add_argument("--vit-batch", type=int, default=8, help="batch of the AutoFormer size sweep")
    parser.add_argument("--vit-max-batch", type=int, default=64, help="largest AutoFormer batch of the batch sweep")
    parser.add_argument("--no-vit", action="store_true", help="NB201 only")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--plot", help="PNG of both sweeps")
    args = parser.parse_args()
    proxies = args.proxies.split(",")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, medians of {args.repeats}, proxies alone")

    nb201 = lswag.spaces.get("nb201")
    cell = nb201.build(nb201.parse(NB201_CELL), num_classes=10, seed=0)
    batch_rows = {"NB201": [(b, costs(cell, lswag.load_batch("gaussian", batch_size=b, image_size=32), proxies,
                                      args.repeats, "nb201")) for b in args.batches]}
    size_rows = {"NB201": []}
    for arch in nb201.sample(args.cells, seed=1):
        model = nb201.build(arch, num_classes=10, seed=0)
        params = sum(p.numel() for p in model.parameters())
        size_rows["NB201"].append((params, costs(model, lswag.load_batch("gaussian", batch_size=32, image_size=32),
                                                 proxies, args.repeats, "nb201")))
    size_rows["NB201"].sort(key=lambda row: row[0])

    if not args.no_vit:
        vit = lswag.spaces.get("autoformer-s")
        grid = vit.grid
        depth = min(grid.depth)
        smallest = ViTConfig(min(grid.embed_dim), (min(grid.mlp_ratio),) * depth, (min(grid.num_heads),) * depth)
        model = vit.build(smallest, num_classes=1000, seed=0)
        batch_rows["AutoFormer-S"] = [
            (b, costs(model, lswag.load_batch("gaussian", batch_size=b, image_size=224, num_classes=1000), proxies,
                      args.repeats, "autoformer-s")) for b in args.batches if b <= args.vit_max_batch]
        size_rows["AutoFormer-S"] = []
        for embed, depth, ratio, heads in zip(grid.embed_dim, grid.depth, grid.mlp_ratio, grid.num_heads):
            config = ViTConfig(embed, (ratio,) * depth, (heads,) * depth)   # smallest, middle, largest
            model = vit.build(config, num_classes=1000, seed=0)
            batch = lswag.load_batch("gaussian", batch_size=args.vit_batch, image_size=224, num_classes=1000)
            size_rows["AutoFormer-S"].append(
                (vit.params(config), costs(model, batch, proxies, args.repeats, "autoformer-s")))

    for space, rows in batch_rows.items():
        sweep(f"{space}: time against batch size", rows, "batch", proxies)
    for space, rows in size_rows.items():
        sweep(f"{space}: time against parameters", rows, "params", proxies)

    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        for axis, table, xlabel in ((left, batch_rows, "batch size"), (right, size_rows, "parameters")):
            for space, rows in table.items():
                for name in ["floor", *proxies]:
                    axis.plot([k for k, _ in rows], [t[name] for _, t in rows], marker="o",
                              linestyle="-" if space == "NB201" else "--", label=f"{space} {name}")
            axis.set(xscale="log", yscale="log", xlabel=xlabel, ylabel="seconds")
        left.legend(fontsize=7)
        figure.tight_layout()
        figure.savefig(args.plot, dpi=120)
        print(f"\nfigure written to {args.plot}")


if __name__ == "__main__":
    main()
