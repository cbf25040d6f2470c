"""``lswag bench``: score sampled architectures of a space and correlate each proxy with ground truth.

The architectures are drawn (seeded) from those the ground truth covers; every one is scored
with all requested proxies from shared probe passes on one fixed batch, and each
architecture's results are committed to the :class:`lswag.store.Store` as soon as they exist.
Rerunning the same command computes only what the store lacks. With ``workers > 1`` a local
process pool scores architectures in parallel (torch threads split between the workers); with
``executor="ray"`` the architectures go to a Ray cluster as tasks. In every case this process
alone writes the store, as each result comes back.
"""
from __future__ import annotations

import csv
import os
import random
import resource
import socket
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
from tqdm import tqdm

from lswag import __version__, plots, spaces
from lswag.benchmarks import load_truth
from lswag.data import Batch, load_batch
from lswag.ensembles import ENSEMBLES, pool_ensembles
from lswag.errors import LswagError, unknown_choice
from lswag.probe import INITS
from lswag.scoring import resolve_device, resolve_proxies, score_architecture, score_network, space_options
from lswag.stats import Correlation, correlate
from lswag.store import Store


@dataclass(frozen=True)
class BenchConfig:
    """What a benchmark run scores; everything that changes a score is part of the store key."""

    space: str
    truth: str
    metric: str
    n: int = 1000
    seed: int = 0
    proxies: tuple[str, ...] = ("all",)
    data: str = "digits"
    batch_size: int = 64
    image_size: int | None = None          # default: the space's input size
    gradient_draws: int = 2
    init: str = "given"                    # lswag.probe.INITS
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    build: dict[str, Any] = field(default_factory=dict)   # the space's build options, e.g. task
    column_names: tuple[str, ...] | None = None            # for truth CSVs without a header
    duplicates: str = "error"                              # rows of one arch: error, or their mean
    dataset: str | None = None             # for truth files holding several datasets
    arch_column: str | None = None         # default: the space's truth_arch_column
    device: str = "cpu"


@dataclass(frozen=True)
class ProxyReport:
    proxy: str
    correlation: Correlation
    mean_seconds: float
    scores: list = field(repr=False)   # per sampled architecture: value or Failure
    truth: list = field(repr=False)    # the matching ground-truth accuracies
    archs: list = field(repr=False)    # the sampled architectures (text form), in the same order
    skipped: int = 0                   # rows of the truth file left out for lacking the metric


def sample_archs(archs, space, n: int, seed: int | str) -> list:
    """``n`` of ``archs`` drawn with ``seed``, independent of the order they were listed in."""
    ordered = sorted(archs, key=space.format)
    return ordered if n >= len(ordered) else random.Random(seed).sample(ordered, n)


def peak_memory_mb() -> float:
    """High-water mark of this process's memory (RSS on the CPU; allocated memory on a GPU)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


_WORKER: dict[str, Any] = {}


def _start_worker(space: str, batch: Batch, threads: int) -> None:
    torch.set_num_threads(threads)
    _WORKER.update(space=space, batch=batch)


def _score(arch: str, proxies: list[str], options: dict, seed: int, gradient_draws: int, init: str, build: dict,
           device: str = "cpu"):
    _, _, results = score_architecture(_WORKER["space"], arch, proxies=proxies, seed=seed, batch=_WORKER["batch"],
                                       options=options, gradient_draws=gradient_draws, init=init, build=build,
                                       device=device)
    return arch, [(r.name, r.value, r.seconds) for r in results], peak_memory_mb()


def _score_in_ray(space: str, batch: Batch, threads: int, *task):
    _start_worker(space, batch, threads)
    return _score(*task)


EXECUTORS = ("local", "ray")


def _worker_pool(space: str, batch: Batch, workers: int) -> ProcessPoolExecutor:
    threads = max(1, (os.cpu_count() or 1) // workers)
    return ProcessPoolExecutor(workers, initializer=_start_worker, initargs=(space, batch, threads))


def _local_results(space: str, batch: Batch, tasks: list[tuple], pool: ProcessPoolExecutor | None) -> Iterator[tuple]:
    if pool is None:
        _start_worker(space, batch, torch.get_num_threads())
        for task in tasks:
            yield _score(*task)
        return
    for future in as_completed([pool.submit(_score, *task) for task in tasks]):
        yield future.result()


def _check_reachable(address: str) -> None:
    """Fail at once on a HOST:PORT nobody listens on (Ray itself retries for minutes)."""
    host, _, port = address.rpartition(":")
    if address == "auto" or "://" in address or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as error:
        raise LswagError(f"cannot reach the Ray cluster at {address}: {error.strerror or error}") from None


def _ray_results(space: str, batch: Batch, tasks: list[tuple], workers: int, address: str | None) -> Iterator[tuple]:
    """Score ``tasks`` as Ray tasks of one CPU each; the results come as they finish.

    With ``address`` it joins that cluster (``"auto"``: the one this machine belongs to; its
    workers need lswag installed), else it starts a local Ray instance of ``workers`` CPUs and
    stops it at the end. It connects before returning, so a bad address fails before any work.
    """
    try:
        import ray
    except ImportError:
        raise LswagError("--executor ray needs Ray: pip install 'lswag[ray]'") from None
    started = not ray.is_initialized()
    if started:
        if address:
            _check_reachable(address)
        try:
            if address:
                ray.init(address=address, logging_level="ERROR", log_to_driver=False)
            else:
                ray.init(num_cpus=workers, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise LswagError(f"cannot start or reach Ray at {address or 'a local instance'}: "
                             f"{str(error).splitlines()[0]}") from None
    return _ray_tasks(ray, space, batch, tasks, stop=started)


def _ray_tasks(ray, space: str, batch: Batch, tasks: list[tuple], stop: bool) -> Iterator[tuple]:
    # At most two tasks per cluster CPU are in flight: an interrupted run has little queued
    # work to lose, and the driver stays responsive.
    try:
        remote = ray.remote(num_cpus=1)(_score_in_ray)
        batch_ref = ray.put(batch)
        window = 2 * max(1, int(ray.cluster_resources().get("CPU", 1)))
        pending, queue = [], list(reversed(tasks))
        while queue or pending:
            while queue and len(pending) < window:
                pending.append(remote.remote(space, batch_ref, 1, *queue.pop()))
            finished, pending = ray.wait(pending, num_returns=1)
            yield ray.get(finished[0])
    finally:
        if stop:
            ray.shutdown()


@dataclass(frozen=True)
class Scoring:
    """How architectures of ``space`` are scored: everything that changes a score, so the store key."""

    space: str
    proxies: tuple[str, ...]
    data: str = "digits"
    batch_size: int = 64
    seed: int = 0                           # of the batch and of the weights
    image_size: int | None = None           # default: the space's input size
    gradient_draws: int = 2
    init: str = "given"                     # lswag.probe.INITS
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    build: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"                     # auto, cpu or cuda; resolved here

    def __post_init__(self):   # every check before any work
        if self.init not in INITS:
            raise unknown_choice("init", self.init, INITS)
        object.__setattr__(self, "device", resolve_device(self.device).type)
        spaces.get(self.space).check_build_options(self.build)
        space_options(spaces.get(self.space), self.names, self.options)

    @property
    def names(self) -> list[str]:
        return resolve_proxies(list(self.proxies))

    @property
    def resolved_options(self) -> dict[str, dict[str, Any]]:
        """The options each proxy is scored with: the space's measured defaults, then ``options``."""
        return space_options(spaces.get(self.space), self.names, self.options)

    @property
    def size(self):
        return self.image_size or spaces.get(self.space).input_shape[1:]

    def settings(self) -> dict[str, dict[str, Any]]:
        """The store key of each proxy: ``{proxy: settings}``."""
        common = {"lswag": __version__, "data": self.data, "batch_size": self.batch_size, "seed": self.seed,
                  "image_size": self.size, "gradient_draws": self.gradient_draws, "init": self.init}
        if self.build:   # absent otherwise, so that stores of earlier runs stay valid
            common["build"] = self.build
        if self.device != "cpu":   # float results differ in their last bits on a GPU
            common["device"] = self.device
        if spaces.get(self.space).memory_format(resolve_device(self.device)) == torch.channels_last:
            common["memory_format"] = "channels_last"   # values differ by rounding from the default layout's
        return {name: {**common, "options": self.resolved_options.get(name, {})} for name in self.names}

    def batch(self) -> Batch:
        return load_batch(self.data, batch_size=self.batch_size, seed=self.seed, image_size=self.size)


def check_executor(workers: int, executor: str, ray_address: str | None) -> None:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise LswagError(f"workers must be at least 1, got {workers}")
    if executor not in EXECUTORS:
        raise LswagError(f"unknown executor {executor!r}; choose one of: {', '.join(EXECUTORS)}")
    if ray_address and executor != "ray":
        raise LswagError("a Ray address needs --executor ray")


class StoreScorer:
    """Scores architectures through a :class:`Store`: what it holds is read, the rest computed
    (in this process, a local pool or Ray) and committed as each architecture finishes."""

    def __init__(self, setup: Scoring, store: Store, *, workers: int = 1, executor: str = "local",
                 ray_address: str | None = None):
        check_executor(workers, executor, ray_address)
        self.setup, self.store, self.workers, self.executor, self.ray_address = setup, store, workers, executor, ray_address
        self.settings = setup.settings()
        self._batch: Batch | None = None
        self._pool: ProcessPoolExecutor | None = None   # started at the first work, kept until close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def __enter__(self) -> StoreScorer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def score(self, archs: list[str], bar: tqdm | None = None) -> dict[str, dict[str, Any]]:
        """``{arch: {proxy: StoredResult}}`` for the (canonical text) ``archs``; ``bar`` advances per arch."""
        setup, names = self.setup, self.setup.names
        done = {name: self.store.done(name, self.settings[name]) for name in names}
        todo = [(arch, [n for n in names if arch not in done[n]]) for arch in dict.fromkeys(archs)]
        todo = [(arch, missing) for arch, missing in todo if missing]
        if bar is not None:
            bar.update(len(set(archs)) - len(todo))
        if todo:
            if self._batch is None:
                self._batch = setup.batch()
            options = setup.resolved_options
            tasks = [(arch, missing, {n: options[n] for n in missing if n in options}, setup.seed,
                      setup.gradient_draws, setup.init, setup.build, setup.device) for arch, missing in todo]
            if self.executor == "ray":
                results = _ray_results(setup.space, self._batch, tasks, self.workers, self.ray_address)
            else:
                if self.workers > 1 and self._pool is None:
                    self._pool = _worker_pool(setup.space, self._batch, self.workers)
                results = _local_results(setup.space, self._batch, tasks, self._pool)
            for arch, scored, peak in results:
                self.store.add(arch, [(name, self.settings[name], value, seconds) for name, value, seconds in scored],
                               peak)
                if bar is not None:
                    bar.update()
        stored = {name: self.store.results(name, self.settings[name]) for name in names}
        return {arch: {name: stored[name][arch] for name in names} for arch in archs}

    def score_network(self, key: str, make: Callable[[int], nn.Module]) -> dict[str, Any]:
        """``{proxy: StoredResult}`` of a network that is no architecture of the space (a pruning
        supernet), stored under ``key``; ``make(num_classes)`` builds it. Scored in this process."""
        setup, names = self.setup, self.setup.names
        missing = [n for n in names if key not in self.store.done(n, self.settings[n])]
        if missing:
            if self._batch is None:
                self._batch = setup.batch()
            options = setup.resolved_options
            results = score_network(spaces.get(setup.space), make, self._batch, missing,
                                    options={n: options[n] for n in missing if n in options}, seed=setup.seed,
                                    build=setup.build, device=setup.device, gradient_draws=setup.gradient_draws,
                                    init=setup.init)
            self.store.add(key, [(r.name, self.settings[r.name], r.value, r.seconds) for r in results],
                           peak_memory_mb())
        return {name: self.store.results(name, self.settings[name])[key] for name in names}


def run_bench(config: BenchConfig, store_path, *, workers: int = 1, executor: str = "local",
              ray_address: str | None = None, progress: bool = True) -> list[ProxyReport]:
    """Score what the store lacks, then correlate every proxy with the ground truth; when all the
    components of AZ-NAS or TE-NAS are among the proxies, their pool combination is reported too.

    ``executor="local"`` scores in this process (``workers=1``) or a process pool of
    ``workers``; ``executor="ray"`` sends the architectures to Ray (a local instance of
    ``workers`` CPUs, or the cluster at ``ray_address``). Results are the same either way up to
    the rounding of the workers' torch thread counts (cores/workers each; docs/performance.md).
    """
    check_executor(workers, executor, ray_address)
    space = spaces.get(config.space)
    setup = Scoring(config.space, tuple(config.proxies), data=config.data, batch_size=config.batch_size,
                    seed=config.seed, image_size=config.image_size, gradient_draws=config.gradient_draws,
                    init=config.init, options=config.options, build=config.build, device=config.device)
    truth = load_truth(config.truth, space=config.space, metric=config.metric,
                       arch_column=config.arch_column, dataset=config.dataset, column_names=config.column_names,
                       duplicates=config.duplicates)
    archs = [space.format(a) for a in sample_archs(truth.archs(), space, config.n, config.seed)]
    with Store(store_path, config.space) as store:
        with StoreScorer(setup, store, workers=workers, executor=executor, ray_address=ray_address) as scorer:
            bar = tqdm(total=len(archs), desc=f"{config.space} bench", unit="arch", disable=not progress)
            scored = scorer.score(archs, bar)
            bar.close()
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
        try:
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
        except OSError as error:
            raise LswagError(f"cannot read correlation table {path}: {error.strerror}") from None
        if not rows or set(TABLE_COLUMNS) - set(rows[0]):
            raise LswagError(f"{path} is not an lswag correlations.csv (columns: {', '.join(TABLE_COLUMNS)})")
        for row in rows:
            rho.setdefault(row["proxy"], {})[row["benchmark"]] = float(row["spearman"])
    return rho
