"""NAS-Bench-Suite-Zero's own Spearman rho on NB201, from its precomputed proxy scores.

For every proxy column of the precomputed tables in ``../shared/benchmarks/nasbench201/``, rho
against the suite's own target (``val_accuracy``); failures (its -1e8 sentinel) rank last.
These are the numbers lswag's measured rho are set beside in ``docs/reproduction.md``.

    python benchmarks/suite_zero_correlations.py
"""
from __future__ import annotations

from pathlib import Path

from lswag.truth import load_truth
from lswag.stats import correlate

FOLDER = Path(__file__).resolve().parents[1].parent / "shared/benchmarks/nasbench201"
TABLES = [("nb201_suite0_13proxies_9445nets.csv", "cifar10"),
          ("nb201_suite0_partial_13proxies.csv", "cifar100"),
          ("nb201_suite0_13proxies_9445nets.csv", "ImageNet16-120")]


def main():
    for name, dataset in TABLES:
        truth = load_truth(FOLDER / name, space="nb201", metric="val_accuracy", dataset=dataset)
        archs = truth.archs()
        accuracy = [truth.value(a) for a in archs]
        print(f"{name} [{dataset}]: {len(archs)} cells")
        for column, values in sorted(truth.columns.items()):
            if column.endswith("_time"):
                continue
            c = correlate([values.get(a) for a in archs], accuracy, n_boot=200)
            print(f"  {column:<10} rho={c.spearman:6.3f} [{c.spearman_ci[0]:.3f}, {c.spearman_ci[1]:.3f}]"
                  f"  failures={c.failures}")


if __name__ == "__main__":
    main()
