"""Score a network with several proxies from shared passes: ``lswag.score(model, batch, proxies)``."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from lswag import losses, probe, spaces
from lswag import proxies as registry
from lswag.data import Batch, as_batch
from lswag.errors import LswagError, unknown_choice
from lswag.probe.passes import SERVED_BY_GRADIENT_PASS
from lswag.proxies import Failure
from lswag.settings import DEVICES
from lswag.spaces import SearchSpace


@dataclass(frozen=True)
class ProxyResult:
    """One proxy's outcome on one network.

    ``seconds`` is the proxy's share of the call's wall time: its own computation (with the pass
    that synflow, tcet, zen, flops and az_complexity run on a copy of their own) plus, for each
    probe pass it reads, that pass's wall time divided by the number of proxies of the call that
    read it (the gradient pass's forward, doing the work of several passes, counts as one; see
    :func:`pass_shares`). The seconds of one call's results sum to the time of its passes and
    computations (the model's private copy and the input checks aside). A proxy scored alone is
    charged all of its passes: that is what it costs alone; with others it is charged less.
    0 for every proxy when the probe raised. ``warning`` says when the value is pinned at the proxy's declared ceiling
    (:func:`lswag.proxies.ceiling_warning`), where it cannot rank networks.
    """

    name: str
    value: float | Failure
    seconds: float
    warning: str | None = None

    @property
    def failed(self) -> bool:
        return isinstance(self.value, Failure)


def evaluate(model: nn.Module, batch: Any, proxies: Iterable[str] | str = ("l_swag",), *,
             num_classes: int | None = None, options: dict[str, dict[str, Any]] | None = None,
             gradient_draws: int = 2, loss_fn: Callable | str | None = None, output: Callable | None = None,
             init: str = "given", init_seed: int = 0, memory_format: torch.memory_format = torch.contiguous_format,
             fail_fast: bool = False) -> list[ProxyResult]:
    """Run the probe once for all ``proxies`` and compute each; the model is not modified.

    ``batch`` is what the user holds: an ``(x, y)`` tuple or list, a dict batch (``pixel_values``,
    ``input_ids``, ``images``, ``x``... and ``labels``, ``label``, ``y``...), a DataLoader (its
    first batch), a tensor of inputs alone (scored against seeded random labels), or a
    :class:`Batch`; :func:`lswag.data.as_batch` converts and checks it (a malformed tensor is an
    :class:`LswagError` naming the problem). ``num_classes`` defaults to the Batch's, else to the
    width of the model's output on the first two inputs (a model that cannot run them is an
    :class:`LswagError` too). Floating-point inputs must have the dtype of the model's weights;
    integer inputs are token ids, which the proxies that feed or differentiate the input (synflow,
    tcet, zen, jacov, epe_nas) cannot take: they fail, saying so.

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
    # after the settings, which are checked without running the model
    weight = next((p for p in model.parameters() if p.is_floating_point()), None)
    cross_entropy = loss_fn is None or loss_fn is F.cross_entropy or isinstance(loss_fn, nn.CrossEntropyLoss)
    batch = as_batch(batch, num_classes=num_classes, classes_of=lambda x: output_width(model, x, output),
                     class_labels=cross_entropy, float_dtype=None if weight is None else weight.dtype)
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
    shares = pass_shares(record, {name: registry.get(name).needs_for(options.get(name, {})) for name in names})
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
        warning = registry.ceiling_warning(name, value, record, model, **options.get(name, {}))
        results.append(ProxyResult(name, value, own_seconds + shares[name], warning))
    return results


def pass_shares(record: probe.Record, needs: dict[str, frozenset[str]]) -> dict[str, float]:
    """Each proxy's share of the probe's wall time, given what each needs: every forward (a pass,
    or the gradient pass's forward serving several) is split evenly among the proxies reading it."""
    fused = bool(record.seconds.keys() & {"gradient", "hessian"})
    # the forward each pass's work was done in, and that forward's wall time
    run_of = {p: "gradient" if fused and p in SERVED_BY_GRADIENT_PASS else p for p in record.seconds}
    run_seconds = {run_of[p]: seconds for p, seconds in record.seconds.items()}
    readers = {name: {run_of[probe.PASS_OF_NEED[need]] for need in proxy_needs
                      if probe.PASS_OF_NEED[need] in run_of} for name, proxy_needs in needs.items()}
    count = {run: sum(run in runs for runs in readers.values()) for run in run_seconds}
    return {name: sum(run_seconds[run] / count[run] for run in runs) for name, runs in readers.items()}


def output_width(model: nn.Module, x: torch.Tensor, output: Callable | None = None) -> int:
    """The size of axis 1 (the classes) of the model's output on the first two inputs ``x``, run
    as the probe runs it (a private copy in train mode, without gradients)."""
    net = probe.private_copy(model)
    device = next((p.device for p in net.parameters()), torch.device("cpu"))
    try:
        with torch.no_grad():
            logits = (output or probe.logits_of)(net(x[:2].to(device)))
    except LswagError:
        raise
    except Exception as error:
        raise LswagError(f"cannot count the model's outputs on inputs of shape {tuple(x.shape)} {x.dtype} "
                         f"(pass num_classes= to skip this): {exception_reason('the model', error)}") from error
    if logits.dim() < 2:
        raise LswagError(f"the model's output of shape {tuple(logits.shape)} has no class axis to count; "
                         "pass num_classes=")
    return int(logits.shape[1])


def exception_reason(what: str, error: BaseException) -> str:
    """A one-line Failure reason for an exception raised by ``what``."""
    text = str(error).strip()
    message = text.splitlines()[0][:300] if text else ""
    return f"{what} raised {type(error).__name__}" + (f": {message}" if message else "")


def score(model: nn.Module, batch: Any, proxies: Iterable[str] | str = ("l_swag",),
          **kwargs) -> dict[str, float | Failure]:
    """``{proxy name: value or Failure}`` for ``model`` on ``batch`` (any form :func:`evaluate` takes: an
    ``(x, y)`` tuple, a dict batch, a DataLoader, a tensor, a :class:`Batch`); see :func:`evaluate` for the options."""
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
