"""Score a network with several proxies from shared passes: ``lswag.score(model, batch, proxies)``."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
import torch.nn as nn

from lswag import losses, probe, spaces
from lswag import proxies as registry
from lswag.data import Batch
from lswag.errors import LswagError, unknown_choice
from lswag.settings import DEVICES
from lswag.proxies import Failure
from lswag.spaces import SearchSpace

@dataclass(frozen=True)
class ProxyResult:
    """One proxy's outcome on one network.

    ``seconds`` is what the proxy would cost alone: the wall time of the probe passes it needed
    (shared with the other proxies of the same call) plus its own computation. ``warning`` says
    when the value is pinned at the proxy's declared ceiling (:func:`lswag.proxies.ceiling_warning`),
    where it cannot rank networks.
    """

    name: str
    value: float | Failure
    seconds: float
    warning: str | None = None

    @property
    def failed(self) -> bool:
        return isinstance(self.value, Failure)


def evaluate(model: nn.Module, batch: Batch, proxies: Iterable[str] | str = ("l_swag",), *,
             options: dict[str, dict[str, Any]] | None = None, gradient_draws: int = 2,
             loss_fn: Callable | str | None = None, output: Callable | None = None, init: str = "given",
             init_seed: int = 0, memory_format: torch.memory_format = torch.contiguous_format,
             fail_fast: bool = False) -> list[ProxyResult]:
    """Run the probe once for all ``proxies`` and compute each; the model is not modified.

    ``proxies`` is a list of names, a comma-separated text or ``"all"``; ``options`` maps a proxy
    name to its keyword options, e.g. ``{"l_swag": {"window": (3, 10)}}``. ``init`` other than
    ``"given"`` scores the network with its weights redrawn (``kaiming`` or ``normal``, seeded by
    ``init_seed``; :func:`lswag.probe.initialise`). ``loss_fn`` is a callable ``(output, target)``
    or the name of one of :data:`lswag.losses.LOSSES` (default cross-entropy). ``memory_format``
    is the layout the probe runs the network in (:func:`lswag.probe.record`).

    An exception other than :class:`LswagError` (a settings error) does not abort the call: raised by
    a proxy, it is that proxy's :class:`Failure`, carrying the exception's type and message; raised by
    the probe's passes (e.g. a shape error in the network), it fails every proxy. ``fail_fast``
    raises it instead, for debugging.
    """
    names = list(dict.fromkeys(resolve_proxies(proxies)))
    if init not in probe.INITS:
        raise unknown_choice("init", init, probe.INITS)
    if isinstance(loss_fn, str):
        loss_fn = losses.get(loss_fn)
    options = options or {}
    for name in options:
        if name not in names:
            raise LswagError(f"options given for {name!r}, which is not among the proxies requested: {', '.join(names)}")
    needs: set[str] = set()
    settings: dict[str, tuple[str, Any]] = {}     # probe setting -> (proxy asking, value)
    draw_windows = []   # the depth windows the proxies that need gradient draws read (None: every layer)
    for name in names:
        registry.check_options(name, options.get(name, {}))
        proxy_needs = registry.get(name).needs_for(options.get(name, {}))
        needs |= proxy_needs
        asked = registry.get(name).probe_settings(options.get(name, {}))
        if any(probe.PASS_OF_NEED[need] == "draws" for need in proxy_needs):
            draw_windows.append(asked.pop("draw_window", None))
        for key, value in asked.items():
            if key in settings and settings[key][1] != value:
                raise LswagError(f"{settings[key][0]} and {name} ask the probe for different {key}: "
                                 f"{settings[key][1]} and {value}")
            settings[key] = (name, value)
    if draw_windows:    # one draws pass serves them all: it covers every window asked for
        hull = None if None in draw_windows else (min(w[0] for w in draw_windows), max(w[1] for w in draw_windows))
        settings["draw_window"] = ("", hull)
    if init != "given":  # every proxy (synflow and flops too) sees the redrawn weights; the user's stay
        model = copy.deepcopy(model)
        probe.initialise(model, init, init_seed)
    try:
        record = probe.record(model, batch, needs, gradient_draws=gradient_draws, loss_fn=loss_fn, output=output,
                              memory_format=memory_format, **{key: value for key, (_, value) in settings.items()})
    except LswagError:
        raise
    except Exception as error:
        if fail_fast:
            raise
        failure = Failure(exception_reason("the probe", error))
        return [ProxyResult(name, failure, 0.0) for name in names]
    results = []
    for name in names:
        try:
            value, own_seconds = registry.compute(name, record, model, **options.get(name, {}))
        except LswagError:
            raise
        except Exception as error:
            if fail_fast:
                raise
            value, own_seconds = Failure(exception_reason(name, error)), 0.0
        passes = {probe.PASS_OF_NEED[need] for need in registry.get(name).needs_for(options.get(name, {}))}
        warning = registry.ceiling_warning(name, value, record, model, **options.get(name, {}))
        results.append(ProxyResult(name, value, own_seconds + sum(record.seconds.get(p, 0.0) for p in passes),
                                   warning))
    return results


def exception_reason(what: str, error: BaseException) -> str:
    """A one-line Failure reason for an exception raised by ``what``."""
    text = str(error).strip()
    message = text.splitlines()[0][:300] if text else ""
    return f"{what} raised {type(error).__name__}" + (f": {message}" if message else "")


def score(model: nn.Module, batch: Batch, proxies: Iterable[str] | str = ("l_swag",), **kwargs) -> dict[str, float | Failure]:
    """``{proxy name: value or Failure}`` for ``model`` on ``batch``; see :func:`evaluate` for the options."""
    return {r.name: r.value for r in evaluate(model, batch, proxies, **kwargs)}


def resolve_proxies(names: Iterable[str] | str) -> list[str]:
    """Proxy names from a list or a comma-separated text; ``"all"`` is every registered proxy."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    names = list(names)
    if names == ["all"]:
        return registry.names()
    if not names:
        raise LswagError(f"no proxy given; valid choices: {', '.join(registry.names())}")
    for name in names:
        registry.get(name)
    return names


def space_options(space: SearchSpace, proxies: Iterable[str],
                  options: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """The options to score ``space``'s networks with: the space's measured defaults, then ``options``."""
    options = options or {}
    merged = {name: {**spaces.proxy_defaults(space).get(name, {}), **options.get(name, {})} for name in proxies}
    merged.update({name: value for name, value in options.items() if name not in merged})
    return {name: value for name, value in merged.items() if value}




def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when there is a GPU, else the CPU), ``cpu`` or ``cuda``; a missing GPU is an error."""
    if name not in DEVICES:
        raise unknown_choice("device", name, DEVICES)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise LswagError("device cuda was asked for, but PyTorch sees no GPU here; use --device cpu or auto")
    return torch.device(name)


def space_inputs(search_space: SearchSpace, batch: Batch, *, seed: int, build: dict[str, Any],
                 device: str = "cpu") -> tuple[Batch, dict[str, Any]]:
    """The inputs and targets that ``search_space``'s networks (built with the checked options
    ``build``) are probed on, made from ``batch``, and the probe settings for them on ``device``:
    the task loss, and the channels-last layout on CPU where that was measured faster for the
    space (:attr:`SearchSpace.channels_last_on_cpu`). They depend on no architecture: a run
    makes them once."""
    settings = {"loss_fn": losses.get(search_space.task_loss(**build)),
                "memory_format": search_space.memory_format(resolve_device(device))}
    return search_space.prepare(batch, seed=seed, **build), settings
