"""LIBRA on the 19 tasks of the L-SWAG paper's Tab. 1, from NAS-Bench-Suite-Zero's precomputed scores.

For every task: LIBRA fitted and evaluated on all archs of the table (the paper's protocol,
"in-sample"), and fitted on a random calibration sample and evaluated on the other archs
("held-out", mean ± sd over random splits), next to the best single proxy, plain rank averaging
of all proxies, AZ-NAS, TE-NAS and T-CET (only where the table holds their components, which
Suite-Zero's tables do not), the paper's Tab. 4 ablations, and the paper's own numbers. Prints
the tables of ``docs/libra.md`` as Markdown; ``--out`` also writes one CSV row per task and method.

    python benchmarks/libra_table.py [--calibration 100] [--splits 10] [--seed 0] [--out runs/libra]
    python benchmarks/libra_table.py --join-long     # TNB101 with synflow and zen added
"""
from __future__ import annotations

import argparse
import csv
import math
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

from lswag.libra import Evaluation, ScoreTable, evaluate_held_out, read_scores

BENCHMARKS = Path(__file__).resolve().parents[1].parent / "shared/benchmarks"
TNB_TASKS = [("AE", "autoencoder"), ("Room", "room_layout"), ("Obj.", "class_object"), ("Scene", "class_scene"),
             ("Jig.", "jigsaw"), ("Norm.", "normal"), ("Segm.", "segmentsemantic")]
NB201_PARTIAL = "nasbench201/nb201_suite0_partial_13proxies.csv"
NB201_9445 = "nasbench201/nb201_suite0_13proxies_9445nets.csv"

#: (space, task label, file under ../shared/benchmarks, dataset or task rows, arch column) of Tab. 1
TASKS = ([("NB201", label, NB201_PARTIAL, dataset, "arch_str")
          for label, dataset in (("C10", "cifar10"), ("C100", "cifar100"), ("IN16-120", "ImageNet16-120"))]
         + [("NB101", "C10", "nasbench101/nb101_suite0_partial_11proxies.csv", "cifar10", "naslib_encoding"),
            ("NB301", "C10", "nasbench301/nb301_suite0_partial_13proxies.csv", "cifar10", "genotype")]
         + [("Micro", label, "transnasbench101_micro/tnb101_micro_suite0_partial_13proxies.csv", task, "arch_str")
            for label, task in TNB_TASKS]
         + [("Macro", label, "transnasbench101_macro/tnb101_macro_suite0_partial_13proxies.csv", task, "arch_str")
            for label, task in TNB_TASKS])
#: the same NB201 tasks from the larger file (9,445 cells without unreachable ops), 1000 sampled as the paper
EXTRA_TASKS = [("NB201 (9,445-cell file, 1000 sampled)", label, NB201_9445, dataset, "arch_str")
               for label, dataset in (("C10", "cifar10"), ("IN16-120", "ImageNet16-120"))]

#: the paper's Tab. 1, in the order of TASKS
PAPER_TAB1 = {
    "LIBRA": [.89, .90, .87, .77, .74, .45, .57, .61, .79, .60, .76, .87, .83, .64, .92, .91, .82, .85, .83],
    "AZ-NAS": [.91, .90, .89, .54, .70, .31, .53, .58, .79, .41, .60, .72, .52, .65, .90, .82, .77, .85, .77],
    "TE-NAS": [.70, .67, .64, .12, .37, -.41, .51, .37, .25, .13, .10, .34, -.55, .05, .13, .28, .65, .61, .03],
    "T-CET": [.77, .80, .81, .23, .42, .31, .34, .49, .70, .54, .46, .64, .27, .23, .49, .63, .44, .44, .59],
}
#: the paper's Tab. 4 (per space): our method name -> {space: value}
TAB4A = ["2 gradient-free", "2 gradient-based", "free + based", "2 random", "best + max IG", "best + min IG"]
TAB4B = ["z1+z2, no z3", "z1+z2 + random z3", "z1+z2 + bias-minimising z3", "z1+z2 + bias-matching z3"]
PAPER_TAB4 = {
    "NB201": [.77, .80, .86, .62, .64, .86, .86, .85, .85, .87],
    "NB301": [.63, .53, .56, .57, .53, .71, .71, .44, .71, .74],
    "Micro": [.73, .73, .74, .41, .62, .77, .77, .72, .79, .79],
    "Macro": [.89, .15, .22, .45, .60, .90, .90, .20, .87, .91],
}
ENSEMBLES = ("AZ-NAS", "TE-NAS", "T-CET")
#: proxies that the TNB101 long files add to the partial tables (--join-long)
LONG_COLUMNS = ("synflow", "zen")


def with_long_columns(table: ScoreTable, file: str, task: str) -> ScoreTable:
    """``table`` plus the synflow and zen scores of its cells from the TNB101 folder's long file, NaN
    where absent (synflow exists for four of the seven tasks). The long file comes from other
    Suite-Zero runs: its val_accuracy differs from the partial table's, which is kept."""
    long_file = BENCHMARKS / Path(file).parent / Path(file).name.replace("suite0_partial_13proxies", "groundtruth_long")
    extra = read_scores(long_file, metric="val_accuracy", dataset=task)
    row = {arch: i for i, arch in enumerate(extra.archs)}
    index = [row.get(arch) for arch in table.archs]
    columns = {name: np.array([extra.columns[name][i] if i is not None else np.nan for i in index])
               for name in LONG_COLUMNS}
    return replace(table, source=f"{table.source} + {long_file.name}", columns={**table.columns, **columns},
                   proxies=table.proxies + LONG_COLUMNS)


def run_task(file: str, dataset: str, arch_column: str, n: int | None, args) -> Evaluation:
    table = read_scores(BENCHMARKS / file, metric="val_accuracy", dataset=dataset, arch_column=arch_column)
    if args.join_long and file.startswith("transnasbench101"):
        table = with_long_columns(table, file, dataset)
    return evaluate_held_out(table.sample(n, args.seed), calibration=args.calibration, splits=args.splits, seed=args.seed,
                    bins=int(args.bins) if args.bins.isdigit() else args.bins, bias_method=args.bias_method,
                    tolerance=args.tolerance)


def _value(evaluation: Evaluation, method: str, held_out: bool) -> str:
    if method not in {r.method for r in evaluation.results}:
        return "not in table"
    result = evaluation.result(method)
    value, spread = (result.held_out, result.held_out_std) if held_out else (result.in_sample, None)
    if math.isnan(value):
        return "n/a"
    return f"{value:.2f}" if spread is None else f"{value:.2f} ± {spread:.2f}"


def _most_chosen(counts: dict[str, int]) -> str:
    choice, times = Counter(counts).most_common(1)[0]
    return f"{choice} ({times}/{sum(counts.values())})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calibration", type=int, default=100)
    parser.add_argument("--splits", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bins", default="sturges", help="sturges, suite_zero or a bin count")
    parser.add_argument("--bias-method", choices=("rank", "raw"), default="rank")
    parser.add_argument("--tolerance", type=float, default=0.1)
    parser.add_argument("--join-long", action="store_true",
                        help="TNB101: add synflow and zen from the *_groundtruth_long.csv files")
    parser.add_argument("--out", type=Path, help="folder for libra_tasks.csv (one row per task and method)")
    args = parser.parse_args()
    start = time.perf_counter()
    results = []
    for index, (space, label, file, dataset, arch_column) in enumerate(TASKS + EXTRA_TASKS):
        n = 1000 if file == NB201_9445 else None
        results.append((space, label, file, index, run_task(file, dataset, arch_column, n, args)))

    print(f"Spearman rho with Suite-Zero's val_accuracy, computed from NAS-Bench-Suite-Zero's precomputed scores; "
          f"held-out = fit on {args.calibration} archs, evaluated on the rest, mean ± sd over {args.splits} "
          f"splits (seed {args.seed}); bins {args.bins}, bias {args.bias_method}, tolerance {args.tolerance}"
          + ("; TNB101 with synflow and zen joined from the long files" if args.join_long else "") + ".\n")
    header = ["space", "task", "n", "LIBRA in-sample", "LIBRA held-out", "best single in-sample",
              "best single held-out", "rank avg in-sample", "rank avg held-out", *ENSEMBLES,
              "paper LIBRA", "paper AZ-NAS", "paper TE-NAS", "paper T-CET"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for space, label, file, index, ev in results:
        best = ev.result("best single proxy")
        paper = [f"{PAPER_TAB1[m][index]:.2f}" if index < len(TASKS) else "-" for m in PAPER_TAB1]
        row = [space, label, str(ev.n), _value(ev, "LIBRA", False), _value(ev, "LIBRA", True),
               f"{best.in_sample:.2f} ({best.chosen})", _value(ev, "best single proxy", True),
               _value(ev, "rank average (all proxies)", False), _value(ev, "rank average (all proxies)", True),
               *(_value(ev, m, False) for m in ENSEMBLES), *paper]
        print("| " + " | ".join(row) + " |")

    print("\nChoices: in-sample (all archs) and the most frequent held-out choice (splits out of "
          f"{args.splits}).\n")
    print("| space | task | in-sample z1, z2, z3 (rho) | tolerance | notes | most frequent held-out choice |")
    print("|---|---|---|---|---|---|")
    for space, label, file, index, ev in results:
        chosen = ", ".join(f"{c.proxy} ({c.spearman:.2f})" for c in ev.libra.choices)
        notes = "; ".join(ev.libra.notes)
        print(f"| {space} | {label} | {chosen} | {ev.libra.tolerance:g} | {notes} | "
              f"{_most_chosen(ev.result('LIBRA').held_out_chosen)} |")

    print("\nPaper's Tab. 4 ablations, mean Spearman rho over the space's tasks (in-sample / held-out), "
          "paper's value in brackets.\n")
    methods = TAB4A + TAB4B
    print("| space | " + " | ".join(methods) + " |")
    print("|---|" + "---|" * len(methods))
    for space in PAPER_TAB4:
        evaluations = [ev for s, _, _, index, ev in results if s == space]
        cells = []
        for k, method in enumerate(methods):
            inside = [ev.result(method).in_sample for ev in evaluations]
            held = [ev.result(method).held_out for ev in evaluations]
            inside, held = [v for v in inside if not math.isnan(v)], [v for v in held if not math.isnan(v)]
            text = (f"{sum(inside) / len(inside):.2f} / {sum(held) / len(held):.2f}" if inside else "n/a")
            cells.append(f"{text} [{PAPER_TAB4[space][k]:.2f}]")
        print(f"| {space} | " + " | ".join(cells) + " |")

    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        with open(args.out / "libra_tasks.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["space", "task", "file", "n", "method", "group", "in_sample", "held_out_mean",
                             "held_out_std", "chosen_in_sample"])
            for space, label, file, index, ev in results:
                for r in ev.results:
                    writer.writerow([space, label, file, ev.n, r.method, r.group, r.in_sample, r.held_out,
                                     r.held_out_std, r.chosen])
        print(f"\nrows written to {args.out / 'libra_tasks.csv'}")
    print(f"\nwall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
