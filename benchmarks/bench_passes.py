"""What each proxy costs in units of one plain forward+backward pass, alone and fused.

For an NB201 cell network (C=16, N=5, 32×32, batch 64) and a small ViT (dim 192, depth 4,
patch 4 on 32×32, batch 8) it measures, in one run on this machine:

* the floor: one forward + backward of the cross-entropy loss on the batch, in train mode, in the
  memory format lswag scores the network in (channels-last for NB201 on CPU);
* each proxy alone (``lswag.evaluate(model, batch, [proxy])``, which builds its own probe), with the
  options ``lswag bench`` gives it on the network's space (NB201: l_swag's window [4, 7]);
* the whole zoo fused in one ``evaluate`` call (passes shared), and proxy-by-proxy (the sum of
  the proxies alone, which is what running each reference implementation separately costs).

Then, for a ViT of AutoFormer-Small's size (embed 384, depth 13, 6 heads, MLP ratio 4, patch 16,
224×224, 1000 classes: 23.8M parameters) at batch 8, the floor, l_swag, the two heavy proxies
(grasp, te_ntk_cond) and the fused zoo, each in a fresh process whose peak resident memory is
reported (``--skip-large`` leaves this out; it takes a few minutes).

Times are medians of ``--repeats`` runs; the ratios are to the floor measured in the same run.

    python benchmarks/bench_passes.py --repeats 3
"""
from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import resource
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import lswag
from lswag import proxies
from lswag.data import Batch
from lswag.scoring import evaluate, space_options


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x):
        h = self.norm1(x)
        x = x + self.attention(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class SmallViT(nn.Module):
    def __init__(self, dim=192, depth=4, heads=3, patch=4, size=32, classes=10):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, patch, patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.position = nn.Parameter(0.02 * torch.randn(1, (size // patch) ** 2 + 1, dim))
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(depth)])
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], 1) + self.position
        return self.head(self.norm(self.blocks(x))[:, 0])


def median_seconds(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def layout_of(space_name: str) -> torch.memory_format:
    """The memory format lswag scores the space's networks in on CPU, where these scripts run."""
    return lswag.spaces.get(space_name).memory_format(torch.device("cpu"))


def batch_in_layout(batch: Batch, layout: torch.memory_format) -> Batch:
    """A copy of ``batch`` whose images are in ``layout``, so that the floor runs as the probe does."""
    return dataclasses.replace(batch, x=batch.x.contiguous(memory_format=layout))


def floor(model: nn.Module, batch: Batch) -> None:
    model.train()
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(batch.x), batch.y).backward()


def measure(label: str, model: nn.Module, batch: Batch, repeats: int,
            layout: torch.memory_format = torch.contiguous_format, space: str | None = None) -> None:
    """``space``: the proxies get the options ``lswag bench`` gives them there (:func:`lswag.spaces.proxy_defaults`)."""
    names = proxies.names()
    model, batch = model.to(memory_format=layout), batch_in_layout(batch, layout)

    def run(chosen):
        evaluate(model, batch, chosen, memory_format=layout,
                 options=space_options(lswag.spaces.get(space), chosen) if space else None)

    run(names)                                                  # warm-up: allocator, FLOP counter start-up
    base = median_seconds(lambda: floor(model, batch), repeats)
    alone = {name: median_seconds(lambda: run([name]), repeats) for name in names}
    fused = median_seconds(lambda: run(names), repeats)
    print(f"\n{label}: floor (one forward+backward) {base * 1000:.1f} ms; costs in floors")
    for name in sorted(names, key=alone.get):
        passes = sorted({lswag.probe.PASS_OF_NEED[n] for n in proxies.get(name).needs})
        own = proxies.get(name).own_pass
        print(f"  {name:<18} {alone[name] / base:7.2f}   {', '.join(passes + ([f'own: {own}'] if own else []))}")
    print(f"  {'zoo fused':<18} {fused / base:7.2f}   (one evaluate call, {len(names)} proxies)")
    print(f"  {'zoo one by one':<18} {sum(alone.values()) / base:7.2f}   (sum of the proxies alone)")


def autoformer_small_sized() -> tuple[nn.Module, Batch]:
    torch.manual_seed(0)
    model = SmallViT(dim=384, depth=13, heads=6, patch=16, size=224, classes=1000)
    return model, lswag.load_batch("gaussian", batch_size=8, image_size=224, num_classes=1000)


def _large_child(what: str, threads: int, repeats: int, queue) -> None:
    torch.set_num_threads(threads)
    model, batch = autoformer_small_sized()
    names = proxies.names() if what == "zoo fused" else [what]
    run = (lambda: floor(model, batch)) if what == "floor" else (lambda: evaluate(model, batch, names))
    run()                                                   # warm-up
    seconds = median_seconds(run, repeats)
    queue.put((seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20))   # KiB -> GiB


def measure_large(threads: int, repeats: int) -> None:
    context = multiprocessing.get_context("spawn")
    results = {}
    for what in ("floor", "l_swag", "grasp", "te_ntk_cond", "zoo fused"):
        queue = context.Queue()
        child = context.Process(target=_large_child, args=(what, threads, repeats, queue))
        child.start()
        results[what] = queue.get()
        child.join()
    base = results["floor"][0]
    print(f"\nViT of AutoFormer-Small's size (23.8M parameters), batch 8, 224x224: floor {base:.2f} s; "
          "costs in floors, peak resident memory of a fresh process")
    for what, (seconds, peak) in results.items():
        print(f"  {what:<18} {seconds / base:7.2f}   peak {peak:5.2f} GiB")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--skip-large", action="store_true", help="leave out the AutoFormer-Small-sized ViT")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, medians of {args.repeats}")
    space = lswag.spaces.get("nb201")
    cell = space.build(space.parse("13714"), num_classes=10, seed=0)
    measure("NB201 cell #13714, batch 64, 32x32, channels-last, l_swag in NB201's window [4, 7]", cell,
            lswag.load_batch("gaussian", batch_size=64, image_size=32), args.repeats, layout_of("nb201"),
            "nb201")
    torch.manual_seed(0)
    measure("small ViT (dim 192, depth 4), batch 8, 32x32", SmallViT(),
            lswag.load_batch("gaussian", batch_size=8, image_size=32), args.repeats)
    if not args.skip_large:
        measure_large(args.threads, max(1, args.repeats // 2))


if __name__ == "__main__":
    main()
