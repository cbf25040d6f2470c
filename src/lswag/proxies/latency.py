"""Measured cost: ``latency``, the milliseconds of a network's inference forward, for searches that
minimise it beside their fitness (``lswag search --minimise latency``) or bound it (``--max-latency-ms``).

Unlike every other proxy it is measured, not computed: it depends on the machine, the device and
torch's thread count, and varies from run to run. It is registered ``timed``
(:attr:`lswag.proxies.Proxy.timed`), so its store key names where it was timed
(:meth:`lswag.settings.Scoring.store_keys`, :func:`timing_host`), and it is no member of ``all``
(:func:`lswag.proxies.names`): it is a cost, not a zero-cost proxy of accuracy.
"""
from __future__ import annotations

import copy
import platform
import statistics
import time
from pathlib import Path

import torch

from lswag.errors import LswagError
from lswag.probe.tensors import memory_format_of
from lswag.proxies import proxy

#: where the NVIDIA driver describes each GPU ("Model: ..."), read without initialising CUDA, so that
#: the worker processes forked after the store keys are made can still use the GPU
NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")


def timing_host(device: str) -> str:
    """The processor a ``device`` timing runs on: the GPU's name for ``cuda``, else the CPU's model
    (``/proc/cpuinfo``'s model name, or :func:`platform.processor`, or the machine type)."""
    if device == "cuda":
        models = {line.split(":", 1)[1].strip() for info in sorted(NVIDIA_GPUS.glob("*/information"))
                  for line in info.read_text().splitlines() if line.startswith("Model:")}
        return models.pop() if len(models) == 1 else torch.cuda.get_device_name()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _check(batch_size, warmup, repeats) -> None:
    for name, value, low in (("batch_size", batch_size, 1), ("warmup", warmup, 0), ("repeats", repeats, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise LswagError(f"latency {name} must be an integer >= {low}, got {value!r}")


@proxy("latency", validate=_check, own_pass=("timed eval-mode forwards, no grad", "forward"), timed=True)
def latency(record, model, batch_size: int = 1, warmup: int = 3, repeats: int = 10) -> float:
    """Median milliseconds of an eval-mode, no-grad forward of ``batch_size`` inputs, after ``warmup`` untimed ones.

    latency = median over ``repeats`` timed forwards of an eval-mode copy of the network on the
    scoring device (each ended by ``torch.cuda.synchronize()`` on a GPU), fed the record's first
    ``batch_size`` inputs (the batch repeated when it is smaller) in the probe's memory layout, at
    the torch thread count the scoring runs with (:data:`lswag.engine.SCORING_THREADS`). Timings taken while other workers
    run are contended: score with ``--workers 1`` for clean latencies.
    """
    inputs = record.batch.x
    copies = -(-batch_size // len(inputs))
    layout = memory_format_of(inputs)   # the probe's (channels-last where the space measured it faster)
    x = inputs.repeat(copies, *[1] * (inputs.dim() - 1))[:batch_size]
    x = x.contiguous(memory_format=layout) if x.dim() == 4 else x
    net = copy.deepcopy(model).eval().to(memory_format=layout)
    on_gpu = x.device.type == "cuda"
    timings = []
    with torch.no_grad():
        for run in range(warmup + repeats):
            start = time.perf_counter()
            record.logits(net(x))
            if on_gpu:
                torch.cuda.synchronize(x.device)
            if run >= warmup:
                timings.append(time.perf_counter() - start)
    return statistics.median(timings) * 1e3
