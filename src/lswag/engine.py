"""The scoring engine: architectures of a space scored through the result store.

:class:`Engine` scores architectures (or networks that are no architecture, such as pruning
supernets) under one :class:`lswag.settings.Scoring`, the settings object every scoring command
passes whole: what the
store holds is read, the rest computed in this process, a local process pool or Ray (one
executor per engine, started at the first work) and committed as each architecture finishes.
This process alone writes the store. bench, search, layers and demo all score through it.

Every process that scores (this one for one worker, each pool worker, each Ray task) runs torch
on :data:`SCORING_THREADS` intra-op threads while it scores (:class:`Prepared`): float32 sums are
reduced in an order that depends on the thread count, and ZiCo's and L-SWAG's 1/σ amplify the
difference to percents where σ ≈ 0, so a fixed count makes every stored value independent of
``--workers``, the executor and the caller's threads (docs/performance.md, "Values and the worker
count"). Parallelism comes from workers, not threads.
"""
from __future__ import annotations

import random
import resource
import socket
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Any, Callable

import torch
import torch.nn as nn
from tqdm import tqdm

from lswag import proxies as registry
from lswag.data import Batch
from lswag.errors import LswagError
from lswag.scoring import ProxyResult, evaluate, exception_reason, resolve_device, resolve_proxies, space_inputs
from lswag.settings import Execution, Scoring
from lswag.store import Store, StoredResult

#: torch's intra-op threads while :class:`Prepared` makes inputs or scores, in every process: one,
#: so that no value depends on the number of workers or on the caller's threads (module docstring).
#: A measuring script may set it to time another count; values then differ by rounding.
SCORING_THREADS = 1


@contextmanager
def scoring_threads() -> Iterator[None]:
    """torch on :data:`SCORING_THREADS` threads inside, the caller's thread count restored after."""
    caller = torch.get_num_threads()
    if caller != SCORING_THREADS:
        torch.set_num_threads(SCORING_THREADS)
    try:
        yield
    finally:
        if torch.get_num_threads() != caller:
            torch.set_num_threads(caller)


class Prepared:
    """A :class:`Scoring` made ready to score on one batch: the space's task inputs, loss, layout
    and sized build options, made once per run (per worker), whatever the architecture. It makes
    them and scores on :data:`SCORING_THREADS` threads (:func:`scoring_threads`), wherever it runs."""

    def __init__(self, setup: Scoring, batch: Batch, fail_fast: bool = False):
        self.setup, self.fail_fast = setup, fail_fast
        space = setup.search_space
        with scoring_threads():
            self.inputs, self.probe_settings = space_inputs(space, batch, seed=setup.seed, build=setup.build,
                                                            device=setup.device)
        self.build = space.sized_build(setup.build, batch.x)

    def network(self, arch) -> Callable[[int], nn.Module]:
        """``make(num_classes)`` of the architecture ``arch`` (any text form, or parsed)."""
        space, seed = self.setup.search_space, self.setup.seed
        parsed = space.parse(arch) if isinstance(arch, str) else arch
        return lambda classes: space.build(parsed, num_classes=classes, seed=seed, **self.build)

    def score(self, make: Callable[[int], nn.Module], names: list[str], **kwargs) -> list[ProxyResult]:
        """Score the network ``make(num_classes)`` with ``names``; ``kwargs`` go to :func:`evaluate`
        and win. An exception building the network fails every proxy (with its type and message)
        unless ``fail_fast``; a proxy's own exception fails that proxy alone (:func:`evaluate`)."""
        with scoring_threads():
            return self._score(make, names, **kwargs)

    def _score(self, make: Callable[[int], nn.Module], names: list[str], **kwargs) -> list[ProxyResult]:
        setup = self.setup
        options = {n: setup.resolved_options[n] for n in names if n in setup.resolved_options}
        try:
            model = make(self.inputs.num_classes).to(resolve_device(setup.device))
        except LswagError:
            raise
        except Exception as error:
            if self.fail_fast:
                raise
            return [ProxyResult(name, registry.Failure(exception_reason("building the network", error)), 0.0)
                    for name in names]
        return evaluate(model, self.inputs, names, options=options, gradient_draws=setup.gradient_draws,
                        init=setup.init, init_seed=setup.seed, fail_fast=self.fail_fast,
                        **{**self.probe_settings, **kwargs})


def score_architecture(setup: Scoring, arch, *, batch: Batch | None = None, download: bool = False,
                       fail_fast: bool = False, **kwargs) -> tuple[Any, list[ProxyResult]]:
    """Build ``arch`` of ``setup.space`` (weights seeded by ``setup.seed``) and score it on a fixed batch.

    The batch is ``batch`` when given (a benchmark passes the same one for every architecture),
    else :meth:`Scoring.batch`. The space turns the images into the network's inputs and targets
    (:meth:`SearchSpace.prepare`), whose classes the network follows, and names its loss. Returns
    the parsed architecture and the results (options: :attr:`Scoring.resolved_options`); ``kwargs``
    go to :func:`evaluate`.
    """
    parsed = setup.search_space.parse(arch)
    prepared = Prepared(setup, batch if batch is not None else setup.batch(download), fail_fast)
    return parsed, prepared.score(prepared.network(parsed), setup.names, **kwargs)


def sample_archs(archs, space, n: int, seed: int | str) -> list:
    """``n`` of ``archs`` drawn with ``seed``, independent of the order they were listed in."""
    ordered = sorted(archs, key=space.format)
    return ordered if n >= len(ordered) else random.Random(seed).sample(ordered, n)


def peak_memory_mb() -> float:
    """High-water mark of this process's memory (RSS on the CPU; allocated memory on a GPU)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


# -- the workers: one Prepared each, tasks of (arch, proxies) -----------------------------------

_WORKER: dict[str, Prepared] = {}


def _start_worker(setup: Scoring, batch: Batch, fail_fast: bool) -> None:
    torch.set_num_threads(SCORING_THREADS)    # what Prepared scores with: no switching per architecture
    _WORKER["prepared"] = Prepared(setup, batch, fail_fast)


def _score(arch: str, names: list[str]) -> tuple[str, list[tuple[str, Any, float]], float]:
    prepared = _WORKER["prepared"]
    results = prepared.score(prepared.network(arch), names)
    return arch, [(r.name, r.value, r.seconds) for r in results], peak_memory_mb()


def _score_in_ray(setup: Scoring, batch: Batch, fail_fast: bool, arch: str, names: list[str]):
    if _WORKER.get("prepared") is None or _WORKER["prepared"].setup != setup:
        _start_worker(setup, batch, fail_fast)
    return _score(arch, names)


class _InProcess:
    """Scores in this process."""

    def __init__(self, setup: Scoring, batch: Batch, fail_fast: bool):
        self.prepared = Prepared(setup, batch, fail_fast)

    def results(self, tasks: list[tuple[str, list[str]]]) -> Iterator[tuple]:
        _WORKER["prepared"] = self.prepared
        for task in tasks:
            yield _score(*task)

    def close(self) -> None:
        pass


class _LocalPool:
    """A process pool of ``workers``, each scoring on :data:`SCORING_THREADS` threads."""

    def __init__(self, setup: Scoring, batch: Batch, fail_fast: bool, workers: int):
        self.pool = ProcessPoolExecutor(workers, initializer=_start_worker, initargs=(setup, batch, fail_fast))

    def results(self, tasks: list[tuple[str, list[str]]]) -> Iterator[tuple]:
        for future in as_completed([self.pool.submit(_score, *task) for task in tasks]):
            yield future.result()

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)


def _check_reachable(address: str) -> None:
    """Fail at once on a HOST:PORT nobody listens on (Ray itself retries for minutes)."""
    host, _, port = address.rpartition(":")
    if address == "auto" or "://" in address or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as error:
        raise LswagError(f"cannot reach the Ray cluster at {address}: {error.strerror or error}") from None


class _Ray:
    """Ray tasks of one CPU each. With ``address`` it joins that cluster (``"auto"``: the one this
    machine belongs to; its workers need lswag installed), else it starts a local Ray instance of
    ``workers`` CPUs and stops it on close. It connects on creation, so a bad address fails before
    any work."""

    def __init__(self, setup: Scoring, batch: Batch, fail_fast: bool, workers: int, address: str | None):
        try:
            import ray
        except ImportError:
            raise LswagError("--executor ray needs Ray: pip install 'lswag[ray]'") from None
        self.ray, self.started = ray, not ray.is_initialized()
        if self.started:
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
        self.remote = ray.remote(num_cpus=1)(_score_in_ray)
        self.shared = (setup, ray.put(batch), fail_fast)

    def results(self, tasks: list[tuple[str, list[str]]]) -> Iterator[tuple]:
        # At most two tasks per cluster CPU are in flight: an interrupted run has little queued
        # work to lose, and the driver stays responsive.
        ray = self.ray
        window = 2 * max(1, int(ray.cluster_resources().get("CPU", 1)))
        pending, queue = [], list(reversed(tasks))
        while queue or pending:
            while queue and len(pending) < window:
                pending.append(self.remote.remote(*self.shared, *queue.pop()))
            finished, pending = ray.wait(pending, num_returns=1)
            yield ray.get(finished[0])

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


class Engine:
    """Scores architectures of ``setup.space`` through ``store`` as ``execution`` says; see the module
    docstring. ``setup.proxies`` are every proxy the run may ask for; each call names the ones it
    needs (default: all of them)."""

    def __init__(self, setup: Scoring, store: Store, execution: Execution = Execution(), *,
                 batch: Batch | None = None, download: bool = False):
        """``batch``: the fixed batch when the caller has loaded it already (else loaded at the first work)."""
        self.setup, self.store, self.execution, self.download = setup, store, execution, download
        self.fail_fast = execution.fail_fast
        self.keys = setup.store_keys()
        self._batch = batch
        self._runner: _InProcess | _LocalPool | _Ray | None = None   # started at the first work
        self._in_process: _InProcess | None = None

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()
            self._runner = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def batch(self) -> Batch:
        if self._batch is None:
            self._batch = self.setup.batch(self.download)
        return self._batch

    def _names(self, proxies) -> list[str]:
        names = self.setup.names if proxies is None else resolve_proxies(list(proxies))
        unknown = [n for n in names if n not in self.keys]
        if unknown:
            raise LswagError(f"{', '.join(unknown)} not among this run's proxies: {', '.join(self.setup.names)}")
        return names

    def _runner_for_archs(self):
        if self._runner is None:
            run = self.execution
            if run.executor == "ray":
                self._runner = _Ray(self.setup, self.batch, self.fail_fast, run.workers, run.ray_address)
            elif run.workers > 1:
                self._runner = _LocalPool(self.setup, self.batch, self.fail_fast, run.workers)
            else:
                self._runner = self._prepared_here()
        return self._runner

    def _prepared_here(self) -> _InProcess:
        if self._in_process is None:
            self._in_process = _InProcess(self.setup, self.batch, self.fail_fast)
        return self._in_process

    def score(self, archs: list[str], proxies=None, bar: tqdm | None = None) -> dict[str, dict[str, StoredResult]]:
        """``{arch: {proxy: StoredResult}}`` for the (canonical text) ``archs``; ``bar`` advances per arch."""
        names, wanted = self._names(proxies), list(dict.fromkeys(archs))
        stored = {name: self.store.results(name, self.keys[name], wanted) for name in names}
        todo = [(arch, [n for n in names if arch not in stored[n]]) for arch in wanted]
        todo = [(arch, missing) for arch, missing in todo if missing]
        if bar is not None:
            bar.update(len(wanted) - len(todo))
        if todo:
            for arch, scored, peak in self._runner_for_archs().results(todo):
                self.store.add(arch, [(name, self.keys[name], value, seconds) for name, value, seconds in scored],
                               peak)
                if bar is not None:
                    bar.update()
            fresh = [arch for arch, _ in todo]
            for name in names:
                stored[name].update(self.store.results(name, self.keys[name], fresh))
        return {arch: {name: stored[name][arch] for name in names} for arch in archs}

    def score_network(self, key: str, make: Callable[[int], nn.Module], proxies=None) -> dict[str, StoredResult]:
        """``{proxy: StoredResult}`` of a network that is no architecture of the space (a pruning
        supernet), stored under ``key``; ``make(num_classes)`` builds it. Scored in this process."""
        names = self._names(proxies)
        missing = [n for n in names if key not in self.store.results(n, self.keys[n], [key])]
        if missing:
            results = self._prepared_here().prepared.score(make, missing)
            self.store.add(key, [(r.name, self.keys[r.name], r.value, r.seconds) for r in results],
                           peak_memory_mb())
        return {name: self.store.results(name, self.keys[name], [key])[key] for name in names}
