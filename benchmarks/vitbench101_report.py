"""The tables of docs/reproduction.md's "Vision Transformers with trained ground truth", from the stores
that ``benchmarks/vitbench101.sh`` fills (it scores; this only reads).

For every proxy in a store (scored at ``--batch-size`` with lswag's default settings) and every
accuracy column of ViT-Bench-101's table: Spearman ρ and Kendall τ with bootstrap 95% intervals
(:func:`lswag.stats.correlate`, failures ranked last), the failures, the seconds per subnet, and the
pool ensembles AZ-NAS and TE-NAS where their components are there. Two size baselines besides
#params and FLOPs: the subnet's depth, and ``within depth``, the proxy's ρ inside each depth
(12, 13, 14) averaged with the groups' sizes as weights, which says whether a proxy ranks beyond
counting layers (PROVENANCE: depth alone ranks c100_kd_acc at ρ ≈ 0.79).

    python benchmarks/vitbench101_report.py --store runs/vit/zoo.sqlite --batch-size 32
    python benchmarks/vitbench101_report.py --store runs/vit/cheap.sqlite --batch-size 16 32 64 --compact

``--options CSV`` (the rows of ``benchmarks/lswag_options.py`` on these subnets: every L-SWAG
variant from one probe per subnet) adds L-SWAG's open choices against every accuracy column: each
pairing and product over all layers, and the window chosen on one half of the subnets (a seeded
split into two halves of 50) reported on the other half, both ways, beside all layers and
``--heuristic P1-P2`` (the window ``lswag layers`` proposes by the paper's rule) on the same halves.
"""
from __future__ import annotations

import argparse
import csv
import itertools
import math
import warnings
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from lswag import proxies as registry
from lswag import spaces
from lswag.truth import load_truth
from lswag.settings import Scoring
from lswag.ensembles import pool_ensembles
from lswag.proxies import Failure
from lswag.stats import constant_note, correlate, failures_last
from lswag.layers import WINDOWS
from lswag.proxies.lswag import PAIRINGS, PRODUCTS
from lswag.store import Store
from lswag_options import variant_name

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TRUTH = SHARED / "benchmarks/vitbench101_autoformer/vitbench101_autoformer_ti.csv"
DATA = "npz:../shared/images/cifar100_sample.npz"   # as benchmarks/vitbench101.sh gives it (part of the store key)
SPACE = "vitbench101-autoformer"
METRICS = ("c100_kd_acc", "c100_base_acc", "flower_kd_acc", "flower_base_acc", "chaoyang_kd_acc",
           "chaoyang_base_acc", "imagenet_super_acc")


def stored_values(store: Path, batch_size: int, proxies: list[str], data: str) -> dict[str, dict[str, object]]:
    """``{proxy: {arch text: StoredResult}}`` of the proxies scored with lswag bench's default settings."""
    setup = Scoring(SPACE, tuple(proxies), data=data, batch_size=batch_size, device="cpu")
    settings = setup.store_keys()
    with Store(store, SPACE) as db:
        return {name: db.results(name, settings[name]) for name in setup.names}


def within_depth(scores: np.ndarray, truth: np.ndarray, depth: np.ndarray) -> float:
    """ρ inside each depth group, averaged with the groups' sizes as weights (failures last)."""
    total, weight = 0.0, 0
    for d in np.unique(depth):
        group = depth == d
        if np.ptp(scores[group]) == 0:      # constant within the group (depth itself): undefined
            continue
        rho = spearmanr(scores[group], truth[group]).statistic
        if math.isfinite(rho):
            total, weight = total + rho * group.sum(), weight + group.sum()
    return total / weight if weight else math.nan


def columns_of(values: dict[str, dict], archs: list[str]) -> dict[str, list]:
    """Per proxy, its values over ``archs`` (Failure where it failed), and the pool ensembles whose components are all there."""
    raw = {name: {a: results[a].value for a in archs} for name, results in values.items()}
    return {name: [column[a] for a in archs] for name, column in {**raw, **pool_ensembles(raw)}.items()}


def window_study(path: Path, truths: dict, heuristic: tuple[int, int] | None, seed: int = 0) -> None:
    """L-SWAG's variants from a lswag_options.py CSV against every metric (see the module docstring)."""
    with open(path) as f:
        rows = list(csv.DictReader(f))
    space = spaces.get(SPACE)
    archs = [r["arch"] for r in rows]
    column = lambda name: np.array([float(r[name]) if r[name] else -math.inf for r in rows])  # noqa: E731
    name = lambda w, pairing="feeding", product="sum": variant_name(w, pairing, product, "draws")  # noqa: E731
    halves = np.array_split(np.random.default_rng(seed).permutation(len(rows)), 2)
    metrics = list(truths)
    print(f"\n### L-SWAG's choices on {len(rows)} subnets ({path})\n")
    print("| variant (all layers unless named) | " + " | ".join(metrics) + " |")
    print("|---" * (len(metrics) + 1) + "|")
    truth = {m: np.array([truths[m].value(space.parse(a)) for a in archs]) for m in metrics}
    rho = lambda values, m, index=slice(None): spearmanr(values[index], truth[m][index]).statistic  # noqa: E731
    for pairing, product in itertools.product(PAIRINGS, PRODUCTS):
        values = column(name((1, 10), pairing, product))
        print(f"| {pairing}, {product} | " + " | ".join(f"{rho(values, m):.3f}" for m in metrics) + " |")
    if heuristic:
        values = column(name(heuristic))
        print(f"| window [{heuristic[0]},{heuristic[1]}] (paper's rule), feeding, sum | "
              + " | ".join(f"{rho(values, m):.3f}" for m in metrics) + " |")
    def twofold(title: str, candidates: list, label, shown) -> None:
        """Each candidate's column name via ``label``; pick on one half, report on the other, both ways."""
        print(f"\n{title}, chosen on one half, ρ on the other half (both directions):\n")
        print("| metric | picked on A → ρ on B | all layers (sum) on B | picked on B → ρ on A | all layers (sum) on A |"
              + (" paper's rule on B / A |" if heuristic else ""))
        print("|---|---|---|---|---|" + ("---|" if heuristic else ""))
        for m in metrics:
            cells = []
            for pick, report in ((halves[0], halves[1]), (halves[1], halves[0])):
                best = max(candidates, key=lambda c: rho(column(label(c)), m, pick))
                cells += [f"{shown(best)} → {rho(column(label(best)), m, report):.3f}", f"{rho(column(name((1, 10))), m, report):.3f}"]
            line = f"| {m} | " + " | ".join(cells) + " |"
            if heuristic:
                line += f" {rho(column(name(heuristic)), m, halves[1]):.3f} / {rho(column(name(heuristic)), m, halves[0]):.3f} |"
            print(line)

    twofold("Window [p1, p2] (feeding pairing, sum)", WINDOWS, name, lambda w: f"[{w[0]},{w[1]}]")
    twofold("Pairing and product (all layers)", list(itertools.product(PAIRINGS, PRODUCTS)),
            lambda c: name((1, 10), *c), ", ".join)


def saturation(subnets: int, batches: list[int], data: str) -> None:
    """How close each GELU site's pattern count Λ is to its ceiling min(units, 2^B): the mean over
    sites of Λ / ceiling, for the first ``subnets`` subnets of the bench's sample, on the draws'
    forwards (L-SWAG's default) at every batch size."""
    from lswag import load_batch, probe
    from lswag.engine import sample_archs
    from lswag.scoring import space_inputs

    space = spaces.get(SPACE)
    archs = sample_archs(load_truth(TRUTH, space=SPACE, metric=METRICS[0]).archs(), space, 100, 0)[:subnets]
    print(f"\n### Λ against its ceiling min(units, 2^B), first {subnets} subnets\n")
    print("| batch | mean Λ / ceiling | sites at ≥ 99% of it | units per site (median) |")
    print("|---|---|---|---|")
    for batch_size in batches:
        batch = load_batch(data, batch_size=batch_size, seed=0, image_size=space.input_shape[1:])
        inputs, settings = space_inputs(space, batch, seed=0, build={})
        ratios, units = [], []
        for arch in archs:
            model = space.build(arch, num_classes=inputs.num_classes, seed=0, **space.sized_build({}, inputs.x))
            record = probe.record(model, inputs, {"draws", "draw_patterns"}, **settings)
            for site in record.draw_sites:
                ceiling = min(site.units, 2 ** batch_size)
                ratios.append(site.patterns / ceiling)
                units.append(site.units)
        ratios = np.array(ratios)
        print(f"| {batch_size} | {ratios.mean():.3f} | {np.mean(ratios >= 0.99):.0%} | {int(np.median(units)):,} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--batch-size", type=int, nargs="+", default=[32])
    parser.add_argument("--proxies", default="all", help="comma-separated, or all (those in the store)")
    parser.add_argument("--metrics", default=",".join(METRICS))
    parser.add_argument("--data", default=DATA)
    parser.add_argument("--compact", action="store_true", help="only the ρ matrix (proxy x metric)")
    parser.add_argument("--options", type=Path, help="a benchmarks/lswag_options.py CSV of these subnets")
    parser.add_argument("--heuristic", help="the window lswag layers proposes, P1-P2")
    parser.add_argument("--saturation", type=int, metavar="N",
                        help="probe the first N subnets at every --batch-size for Λ's saturation (computes)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")   # scipy on a constant column: the tables say "constant" instead
    space = spaces.get(SPACE)
    metrics = args.metrics.split(",")
    truths = {m: load_truth(TRUTH, space=SPACE, metric=m) for m in metrics}
    archs = [space.format(a) for a in truths[metrics[0]].archs()]
    depth = np.array([space.parse(a).depth for a in archs])
    if args.saturation:
        saturation(args.saturation, args.batch_size, args.data)
        return
    if args.options:
        window_study(args.options, truths, tuple(map(int, args.heuristic.split("-"))) if args.heuristic else None)
    for batch in args.batch_size:
        names = registry.names() if args.proxies == "all" else args.proxies.split(",")
        values = stored_values(args.store, batch, names, args.data)
        values = {n: v for n, v in values.items() if all(a in v for a in archs)}
        if not values:
            print(f"batch {batch}: no proxy has all {len(archs)} subnets in {args.store}")
            continue
        table = columns_of(values, archs)
        table["depth"] = list(depth.astype(float))
        seconds = {n: np.mean([values[n][a].seconds for a in archs]) for n in values}
        print(f"\n### batch {batch}: {len(archs)} subnets, {args.store}\n")
        print("| proxy | " + " | ".join(metrics) + " | failures | s/subnet |")
        print("|---" * (len(metrics) + 3) + "|")
        first = np.array([truths[metrics[0]].value(a) for a in archs])
        order = sorted(table, key=lambda n: -np.nan_to_num(spearmanr(failures_last(table[n]), first).statistic, nan=-2))
        for name in order:
            rhos = [spearmanr(failures_last(table[name]), [truths[m].value(a) for a in archs]).statistic for m in metrics]
            failed = sum(isinstance(v, Failure) for v in table[name])
            cost = f"{seconds[name]:.2f}" if name in seconds else ""
            note = constant_note(table[name])
            cells = [note] * len(metrics) if note and not any(map(math.isfinite, rhos)) else \
                [f"{r:.3f}" if math.isfinite(r) else "–" for r in rhos]
            print(f"| {name} | " + " | ".join(cells) + f" | {failed} | {cost} |")
        if args.compact:
            continue
        for m in metrics:
            truth = np.array([truths[m].value(a) for a in archs])
            print(f"\n#### {m} (batch {batch})\n")
            print("| proxy | Spearman ρ [95% CI] | Kendall τ [95% CI] | within depth ρ | failures |")
            print("|---|---|---|---|---|")
            rows = []
            for name, column in table.items():
                c = correlate(column, truth)
                rows.append((c.spearman, name, c, within_depth(failures_last(column), truth, depth)))
            for _, name, c, inside in sorted(rows, key=lambda r: -np.nan_to_num(r[0], nan=-2)):
                if not math.isfinite(c.spearman):    # constant over the pool, or all failed: say which
                    print(f"| {name} | {c.note} | – | – | {c.failures} |")
                    continue
                print(f"| {name} | {c.spearman:.3f} [{c.spearman_ci[0]:.3f}, {c.spearman_ci[1]:.3f}] | "
                      f"{c.kendall:.3f} [{c.kendall_ci[0]:.3f}, {c.kendall_ci[1]:.3f}] | "
                      + (f"{inside:.3f}" if math.isfinite(inside) else "–") + f" | {c.failures} |")


if __name__ == "__main__":
    main()
