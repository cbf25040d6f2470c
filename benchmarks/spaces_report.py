"""Markdown tables of ``benchmarks/evaluate_spaces.sh``'s runs, beside NAS-Bench-Suite-Zero and the paper.

For every run folder the script prints lswag's Spearman ρ [bootstrap 95% CI] per proxy (from the
``correlations.csv`` that ``lswag bench --out`` wrote) and, where Suite-Zero scored the same
proxy, Suite-Zero's ρ: on the very same architectures for NB101 and NB301 (their truth file holds
Suite-Zero's scores), and on Suite-Zero's own sample for TransNAS-Bench-101 (711 micro / 662-725
macro networks per task, which barely overlap lswag's sample).

    python benchmarks/spaces_report.py --runs runs/eval --n 100
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

from lswag import spaces
from lswag.truth import load_truth
from lswag.engine import sample_archs
from lswag.libra import read_scores
from lswag.stats import correlate

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks"
TASKS = ("autoencoder", "jigsaw", "normal", "class_scene", "class_object", "room_layout", "segmentsemantic")
# METHOD.md §7, Tab. 3: full L-SWAG on TransNAS-Bench-101 (the paper reports these three tasks)
PAPER_LSWAG = {("micro", "autoencoder"): 0.31, ("micro", "jigsaw"): 0.58, ("micro", "normal"): 0.75,
               ("macro", "autoencoder"): 0.79, ("macro", "jigsaw"): 0.78, ("macro", "normal"): 0.84}
# the paper's appendix, Tab. 5, row "ALL": L-SWAG over all layers, the proxy lswag's l_swag computes on TNB101
PAPER_ALL_LAYERS = {
    "micro": dict(zip(TASKS, (0.32, 0.52, 0.68, 0.68, 0.48, 0.33, 0.70))),
    "macro": dict(zip(TASKS, (0.70, 0.735, 0.77, 0.78, 0.86, 0.627, 0.78))),
}


def ours(folder: Path) -> dict[str, dict]:
    with (folder / "correlations.csv").open() as f:
        return {row["proxy"]: row for row in csv.DictReader(f)}


def cell(row: dict | None) -> str:
    if row is None:
        return "–"
    rho = float(row["spearman"])
    if rho != rho:   # NaN: every architecture failed
        return f"failed ({row['failures']}/{row['n']})"
    text = f"{rho:.3f} [{float(row['spearman_low']):.2f}, {float(row['spearman_high']):.2f}]"
    return text + (f" ({row['failures']} failed)" if int(row["failures"]) else "")


def same_arch_suite_zero(truth, space, n: int) -> dict[str, float]:
    """Suite-Zero's ρ for each of its proxies on the ``n`` archs lswag bench sampled from ``truth``."""
    archs = sample_archs(truth.archs(), space, n, 0)
    accuracy = [truth.accuracy[a] for a in archs]
    return {name: correlate([column.get(a) for a in archs], accuracy, n_boot=0).spearman
            for name, column in truth.columns.items()}


def suite_zero_tnb(kind: str) -> dict[str, dict[str, float]]:
    """task -> proxy -> Suite-Zero's ρ on its own sample of that task."""
    path = SHARED / f"transnasbench101_{kind}/tnb101_{kind}_suite0_partial_13proxies.csv"
    table = {}
    for task in TASKS:
        scores = read_scores(path, metric="val_accuracy", dataset=task)
        # failures are NaN there, which correlate ranks last
        table[task] = {p: correlate(scores.columns[p], scores.truth, n_boot=0).spearman for p in scores.proxies}
        table[task]["n"] = len(scores)
    return table


def shared_archs_agreement(runs: Path, kind: str, tasks: list[str]) -> None:
    """Spearman ρ between lswag's and Suite-Zero's scores of each proxy on the networks both scored.

    lswag's scores come from the run's store (``RUNS/tnb101_KIND.sqlite``, one per kind, the tasks
    told apart by their ``build`` setting); a check that both compute the same proxy on different
    inputs (lswag: ImageNet images at 64²; Suite-Zero: NASLib's TransNAS-Bench data).
    """
    store = runs / f"tnb101_{kind}.sqlite"
    if not store.exists():
        return
    folder = SHARED / f"transnasbench101_{kind}"
    print(f"\n### tnb101_{kind}: lswag's and Suite-Zero's scores on the networks both scored (Spearman)\n")
    header = None
    for task in tasks:
        mine = read_scores(store, metric=task, truth=folder / f"tnb101_{kind}_groundtruth_wide.csv",
                           setting={"build": f"*{task}*"})
        theirs = read_scores(folder / f"tnb101_{kind}_suite0_partial_13proxies.csv", metric="val_accuracy",
                             dataset=task, space=f"tnb101_{kind}")
        where = {arch: i for i, arch in enumerate(theirs.archs)}
        pairs = [(i, where[arch]) for i, arch in enumerate(mine.archs) if arch in where]
        common = [p for p in mine.proxies if p in theirs.proxies]
        if header is None:
            header = common
            print("| task | networks | " + " | ".join(common) + " |")
            print("|---|---|" + "---|" * len(common))
        ours_index, theirs_index = (list(side) for side in zip(*pairs))
        values = [correlate(mine.columns[p][ours_index], theirs.columns[p][theirs_index], n_boot=0).spearman
                  for p in header]
        print(f"| {task} | {len(pairs)} | " + " | ".join(f"{v:.3f}" for v in values) + " |")


def print_table(title: str, runs: dict[str, dict], reference: dict[str, dict[str, float]], columns: list[str]) -> None:
    print(f"\n### {title}\n")
    print("| proxy | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    proxies = list(dict.fromkeys(p for table in runs.values() for p in table))
    for proxy in proxies:
        cells = []
        for column in columns:
            if column.startswith("S0 "):
                value = reference.get(column[3:], {}).get(proxy)
                cells.append("–" if value is None else f"{value:.3f}")
            else:
                cells.append(cell(runs.get(column, {}).get(proxy)))
        if any(c != "–" for c in cells):
            print(f"| {proxy} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs/eval", type=Path)
    parser.add_argument("--n", type=int, default=100, help="--n of the NB101/NB301/DARTS runs")
    args = parser.parse_args()

    cifar = {"nb101": ("nasbench101/nb101_suite0_partial_11proxies.csv", "naslib_encoding"),
             "nb301": ("nasbench301/nb301_suite0_partial_13proxies.csv", "genotype")}
    for name, (table, arch_column) in cifar.items():
        if not (args.runs / name / "correlations.csv").exists():
            continue
        truth = load_truth(SHARED / table, space=name, metric="val_accuracy", arch_column=arch_column,
                           dataset="cifar10", duplicates="mean")
        reference = {"same archs": same_arch_suite_zero(truth, spaces.get(name), args.n)}
        print_table(f"{name}, CIFAR-10 ({len(truth)} distinct archs in the file)", {"lswag": ours(args.runs / name)},
                    reference, ["lswag", "S0 same archs"])
    if (args.runs / "darts" / "correlations.csv").exists():
        print_table("darts (SWAP's 1000 cells)", {"lswag": ours(args.runs / "darts")}, {}, ["lswag"])

    for kind in ("micro", "macro"):
        runs = {task: ours(args.runs / f"tnb101_{kind}_{task}") for task in TASKS
                if (args.runs / f"tnb101_{kind}_{task}" / "correlations.csv").exists()}
        if not runs:
            continue
        reference = suite_zero_tnb(kind)
        print_table(f"tnb101_{kind}: lswag", runs, reference, list(runs))
        print_table(f"tnb101_{kind}: Suite-Zero on its own sample", runs, reference, [f"S0 {task}" for task in runs])
        sizes = ", ".join(f"{task} {int(reference[task]['n'])}" for task in runs)
        paper = ", ".join(f"{task} {PAPER_LSWAG[(kind, task)]}" for task in runs if (kind, task) in PAPER_LSWAG)
        all_layers = ", ".join(f"{task} {PAPER_ALL_LAYERS[kind][task]}" for task in runs)
        print(f"\nSuite-Zero's archs per task: {sizes}. Paper's L-SWAG (Tab. 3, 1000 archs): {paper or '–'}; "
              f"over all layers (Tab. 5, ALL): {all_layers}.")
        shared_archs_agreement(args.runs, kind, list(runs))


if __name__ == "__main__":
    main()
