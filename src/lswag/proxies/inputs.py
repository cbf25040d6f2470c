"""What the proxies that feed the network their own input, or differentiate it with respect to its
input, ask of the probe's inputs."""
from __future__ import annotations

from lswag.probe import Record
from lswag.proxies import ProxyFailure


def require_float_input(record: Record, proxy: str, use: str) -> None:
    """Fail ``proxy`` with its reason when the inputs are integer token ids, which ``use`` (what the
    proxy does with the input) cannot apply to: there is no derivative or replacement of a token id."""
    x = record.batch.x
    if not x.is_floating_point():
        raise ProxyFailure(f"{proxy} needs float inputs ({use}); this model takes {x.dtype} token ids, "
                           "not floating-point ones")
