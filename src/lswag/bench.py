"""``lswag bench``: score sampled architectures of a space and correlate each proxy with ground truth.

The architectures are drawn (seeded) from those the ground truth covers; every one is scored
with all requested proxies from shared probe passes on one fixed batch through the scoring
engine (:class:`lswag.engine.Engine`: the store, and this process, a local process pool or
Ray), each architecture's results committed as soon as they exist. Rerunning the same command
computes only what the store lacks.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field, replace
from pathlib import Path

from tqdm import tqdm

from lswag import plots
from lswag.settings import Execution, Scoring, TruthSource, check_integer, check_output
from lswag.engine import Engine, sample_archs
from lswag.ensembles import ENSEMBLES, pool_ensembles
from lswag.errors import LswagError
from lswag.stats import Correlation, correlate
from lswag.store import Store


@dataclass(frozen=True)
class BenchConfig:
    """A benchmark run: ``n`` architectures of the truth, sampled with the scoring's seed, scored as ``scoring`` says."""

    scoring: Scoring
    truth: TruthSource
    n: int = 1000

    def __post_init__(self):
        check_integer(self, "n", 1)


@dataclass(frozen=True)
class ProxyReport:
    proxy: str
    correlation: Correlation
    mean_seconds: float
    scores: list = field(repr=False)   # per sampled architecture: value or Failure
    truth: list = field(repr=False)    # the matching ground-truth accuracies
    archs: list = field(repr=False)    # the sampled architectures (text form), in the same order
    skipped: int = 0                   # rows of the truth file left out for lacking the metric


def run_bench(config: BenchConfig, store_path, execution: Execution = Execution(), *,
              progress: bool = True) -> list[ProxyReport]:
    """Score what the store lacks, then correlate every proxy with the ground truth; when all the
    components of AZ-NAS or TE-NAS are among the proxies, their pool combination is reported too.

    ``execution`` says where they are scored (:class:`lswag.settings.Execution`). Results are the
    same either way up to the rounding of the workers' torch thread counts (cores/workers each;
    docs/performance.md).
    """
    setup = config.scoring
    space = setup.search_space
    truth = config.truth.load(setup.space)
    archs = [space.format(a) for a in sample_archs(truth.archs(), space, config.n, setup.seed)]
    batch = setup.batch()   # a bad data source fails here, before the store is made and the progress bar starts
    with Store(store_path, setup.space) as store, Engine(setup, store, execution, batch=batch) as engine, \
            tqdm(total=len(archs), desc=f"{setup.space} bench", unit="arch", disable=not progress) as bar:
        scored = engine.score(archs, bar=bar)
    names = setup.names
    stored = {name: {arch: scored[arch][name] for arch in archs} for name in names}
    reports = [_report(name, stored[name], archs, truth, space) for name in names]
    return [replace(r, skipped=truth.skipped) for r in reports + _ensemble_reports(stored, archs, truth, space)]


def _report(name, stored, archs, truth, space) -> ProxyReport:
    scores = [stored[arch].value for arch in archs]
    accuracy = [truth.value(space.parse(arch)) for arch in archs]
    seconds = sum(stored[arch].seconds for arch in archs) / len(archs)
    return ProxyReport(name, correlate(scores, accuracy), seconds, scores, accuracy, archs)


def _ensemble_reports(stored: dict, archs: list[str], truth, space) -> list[ProxyReport]:
    """AZ-NAS and TE-NAS over the sampled pool (:func:`lswag.ensembles.pool_ensembles`), when all
    their components were scored; their seconds are the components' summed (an upper bound: they share passes)."""
    values = {name: {arch: stored[name][arch].value for arch in archs} for name in stored}
    accuracy = [truth.value(space.parse(arch)) for arch in archs]
    reports = []
    for name, combined in pool_ensembles(values).items():
        scores = [combined[arch] for arch in archs]
        seconds = sum(stored[c][arch].seconds for c in ENSEMBLES[name][1] for arch in archs) / len(archs)
        reports.append(ProxyReport(name, correlate(scores, accuracy), seconds, scores, accuracy, archs))
    return reports


TABLE_COLUMNS = ["benchmark", "proxy", "n", "failures", "spearman", "spearman_low", "spearman_high",
                 "kendall", "kendall_low", "kendall_high", "mean_seconds"]
#: written after TABLE_COLUMNS: why a proxy cannot rank the pool (Correlation.note); optional when read, as
#: tables written before it have none
NOTE_COLUMN = "note"


def write_outputs(reports: list[ProxyReport], folder, benchmark: str) -> Path:
    """Write ``correlations.csv``, ``heatmap.png`` and ``ranks_<proxy>.png`` into ``folder``.

    ``benchmark`` names the column of this run (e.g. the metric); :func:`read_tables` and
    :func:`lswag.plots.heatmap` combine the tables of several runs into the paper's Fig. 3.
    """
    check_output(folder, folder=True)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "correlations.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*TABLE_COLUMNS, NOTE_COLUMN])
        for r in reports:
            c = r.correlation
            writer.writerow([benchmark, r.proxy, c.n, c.failures, c.spearman, *c.spearman_ci, c.kendall,
                             *c.kendall_ci, r.mean_seconds, c.note or ""])
    plots.heatmap({r.proxy: {benchmark: r.correlation.spearman} for r in reports}, folder / "heatmap.png")
    for r in reports:
        plots.rank_scatter(r.proxy, r.scores, r.truth, folder / f"ranks_{r.proxy}.png")
    return path


def read_tables(paths) -> dict[str, dict[str, float]]:
    """``{proxy: {benchmark: spearman}}`` from the ``correlations.csv`` of several runs."""
    rho: dict[str, dict[str, float]] = {}
    for path in paths:
        if Path(path).suffix.lower() != ".csv":
            raise LswagError(f"{path} is not a .csv table; give the correlations.csv that lswag bench --out wrote")
        try:
            with open(path, newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
        except OSError as error:
            raise LswagError(f"cannot read correlation table {path}: {error.strerror}") from None
        except (UnicodeDecodeError, csv.Error) as error:
            raise LswagError(f"{path} is not a UTF-8 CSV table ({error})") from None
        if not rows or set(TABLE_COLUMNS) - set(rows[0]):
            raise LswagError(f"{path} is not an lswag correlations.csv (columns: {', '.join(TABLE_COLUMNS)})")
        for line, row in enumerate(rows, start=2):
            try:
                rho.setdefault(row["proxy"], {})[row["benchmark"]] = float(row["spearman"])
            except (TypeError, ValueError):
                raise LswagError(f"{path}: line {line}: spearman is {row['spearman']!r}, not a number") from None
    return rho
