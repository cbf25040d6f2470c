"""The proxy registry: one name -> one function of the probe's record and the model.

Every proxy is registered with :func:`proxy`, declares which probe passes it needs (see
:data:`lswag.probe.NEEDS`) and returns a float, or raises :class:`ProxyFailure` with a reason;
:func:`compute` turns that, and any non-finite value, into a :class:`Failure`. No proxy returns a
silent 0 or a sentinel such as -1e8. One module per family: ``gradient`` (grad_norm, snip, plain,
fisher, grasp, zico), ``jacobian`` (jacov, epe_nas), ``activation`` (nwot, swap, reg_swap), ``lswag``
(l_swag), ``synflow``, ``size`` (params, flops, l2_norm), ``zen``, ``tcet``, and the per-network
components of the pool ensembles of :mod:`lswag.ensembles`: ``aznas`` (az_expressivity,
az_progressivity, az_trainability, az_complexity) and ``tenas`` (te_ntk_cond, te_linear_regions).
``latency`` (a cost a search may minimise) is measured, not computed: registered ``timed``
(:attr:`Proxy.timed`), it is left out of :func:`names` and so of ``all``.
"""
from __future__ import annotations

import inspect
import math
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

import torch.nn as nn

from lswag.errors import LswagError, unknown_choice
from lswag.probe import COST_CLASSES, PASS_COST, PASS_OF_NEED, Record


class ProxyFailure(Exception):
    """Raised inside a proxy when it cannot score the network; carries the reason."""


@dataclass(frozen=True)
class Failure:
    """A proxy that could not score a network, and why (for correlations it ranks last)."""

    reason: str

    def __str__(self) -> str:
        return f"failed: {self.reason}"


@dataclass(frozen=True)
class Proxy:
    name: str
    function: Callable[..., float]
    needs: frozenset[str]        # what it needs from the probe with its default options
    family: str
    validate: Callable[..., None] | None = None  # checks option values before any pass runs
    own_pass: str | None = None  # the pass it runs itself on its own copy of the model, if any
    needs_of: Callable[..., set[str]] | None = None  # needs as a function of the options, when they depend on them
    #: keyword settings of :func:`lswag.probe.record` its options call for (e.g. te_ntk_cond's ``ntk_samples``)
    settings_of: Callable[..., dict[str, Any]] | None = None
    own_cost: str | None = None  # the cost class (:data:`lswag.probe.COST_CLASSES`) of its own pass
    #: ``ceiling(record, model, **options)``: (the most its value can be on this record, what that bound is and
    #: why a value there cannot rank networks), or None when there is no bound; only proxies with an exact one
    ceiling: Callable[..., tuple[float, str] | None] | None = None
    #: the version of the proxy's implementation: bump it when a change to its code changes its values. The
    #: store key holds it (:mod:`lswag.store`), so scores of the old implementation are not reused
    version: int = 1
    #: measured on the machine (a wall time), not computed from the network: its value depends on where it runs,
    #: which its store key names (:meth:`lswag.settings.Scoring.store_keys`), and it is no member of ``all``
    timed: bool = False

    @property
    def cost(self) -> str:
        """Its cost class with the default options: that of the most expensive pass it needs."""
        classes = [PASS_COST[PASS_OF_NEED[need]] for need in self.needs] + [self.own_cost or "weights only"]
        return max(classes, key=COST_CLASSES.index)

    def needs_for(self, options: dict[str, Any]) -> frozenset[str]:
        """What the proxy needs from the probe with ``options`` (the defaults completing them)."""
        if self.needs_of is None:
            return self.needs
        return frozenset(self.needs_of(**{**self.defaults, **options}))

    def probe_settings(self, options: dict[str, Any]) -> dict[str, Any]:
        """The probe settings (keyword arguments of :func:`lswag.probe.record`) ``options`` call for."""
        return {} if self.settings_of is None else self.settings_of(**{**self.defaults, **options})

    @property
    def summary(self) -> str:
        return (inspect.getdoc(self.function) or "").split("\n", 1)[0]

    @property
    def defaults(self) -> dict[str, Any]:
        """The proxy's options and their default values."""
        parameters = list(inspect.signature(self.function).parameters.values())[2:]
        return {p.name: p.default for p in parameters}


_REGISTRY: dict[str, Proxy] = {}


def proxy(name: str, needs: set[str] | frozenset[str] | Callable[..., set[str]] = frozenset(),
          validate: Callable[..., None] | None = None, own_pass: tuple[str, str] | None = None,
          probe_settings: Callable[..., dict[str, Any]] | None = None,
          ceiling: Callable[..., tuple[float, str] | None] | None = None, version: int = 1,
          timed: bool = False):
    """Register ``function(record, model, **options) -> float`` under ``name``.

    ``needs`` is a set of :data:`lswag.probe.NEEDS`, or a function of the proxy's options returning
    one when an option changes what the probe must record. ``validate(**options)``, when given,
    raises :class:`LswagError` on a bad option value, so that a typo is reported before the network
    runs. ``own_pass`` is (description, cost class) of the pass a proxy runs itself on a differently
    configured copy of the model (synflow, zen, flops), which no other proxy shares. ``probe_settings(**options)``
    returns the keyword settings of :func:`lswag.probe.record` that the options call for.
    ``ceiling(record, model, **options)`` returns the most the value can be on that record and what
    that bound is (:attr:`Proxy.ceiling`), so that :func:`ceiling_warning` can say when it is reached.
    ``version`` is the implementation's (:attr:`Proxy.version`): bump it when a change changes the values.
    ``timed`` marks a measurement (:attr:`Proxy.timed`).
    """
    def decorate(function):
        if name in _REGISTRY:   # a second proxy under the name would silently replace the first
            raise LswagError(f"proxy {name!r} is already registered")
        needs_of = needs if callable(needs) else None
        description, own_cost = own_pass or (None, None)
        if own_cost is not None and own_cost not in COST_CLASSES:
            raise unknown_choice("cost class", own_cost, COST_CLASSES)
        entry = Proxy(name, function, frozenset() if needs_of else frozenset(needs),
                      function.__module__.rsplit(".", 1)[-1], validate, description, needs_of, probe_settings,
                      own_cost, ceiling, version, timed)
        if needs_of:
            entry = replace(entry, needs=entry.needs_for({}))
        _REGISTRY[name] = entry
        return function
    return decorate


def one_of(proxy_name: str, **allowed: tuple) -> Callable[..., None]:
    """A ``validate`` for options that take one of a few values: ``one_of("swap", level=("network", "layers"))``."""
    def validate(**options) -> None:
        for key, choices in allowed.items():
            if options[key] not in choices:
                raise unknown_choice(f"{proxy_name} {key}", options[key], choices)
    return validate


def get(name: str) -> Proxy:
    if name not in _REGISTRY:
        raise unknown_choice("proxy", name, _REGISTRY)
    return _REGISTRY[name]


def names(timed: bool = False) -> list[str]:
    """The registered proxies, sorted: those computed from the network (what ``all`` means), and with
    ``timed`` the measured ones too (:attr:`Proxy.timed`: a wall time is neither deterministic nor zero-cost)."""
    return sorted(name for name, entry in _REGISTRY.items() if timed or not entry.timed)


def check_options(name: str, options: dict[str, Any]) -> None:
    """Reject an option the proxy does not have (naming the ones it has) or a bad option value."""
    entry = get(name)
    known = entry.defaults
    for key in options:
        if key not in known:
            raise LswagError(f"proxy {name!r} has no option {key!r}; its options: "
                             f"{', '.join(known) or 'none'}")
    if entry.validate is not None:
        entry.validate(**{**known, **options})


def compute(name: str, record: Record, model: nn.Module, **options) -> tuple[float | Failure, float]:
    """Run one proxy on a record: (value or Failure, seconds of its own computation)."""
    check_options(name, options)
    start = time.perf_counter()
    try:
        value = float(get(name).function(record, model, **options))
        result: float | Failure = value if math.isfinite(value) else Failure(f"non-finite value {value}")
    except ProxyFailure as failure:
        result = Failure(str(failure))
    return result, time.perf_counter() - start


def ceiling_warning(name: str, value: float | Failure, record: Record, model: nn.Module, **options) -> str | None:
    """A line saying that ``value`` is pinned at the proxy's declared ceiling on ``record``, else None."""
    entry = get(name)
    if entry.ceiling is None or isinstance(value, Failure):
        return None
    bound = entry.ceiling(record, model, **{**entry.defaults, **options})
    # isclose: a bound summed in another order than the value may differ from it in the last bits
    if bound is None or not math.isclose(value, bound[0], rel_tol=1e-9):
        return None
    return f"{name} = {value:.6g} is pinned at its ceiling ({bound[1]})"


from lswag.proxies import (activation, aznas, gradient, jacobian, latency, lswag, size, synflow,  # noqa: E402,F401
                           tcet, tenas, zen)  # (register)
