"""lswag: zero-cost neural architecture search with L-SWAG and the proxies it is compared with.

    import lswag
    model = lswag.spaces.get("nb201").build("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|")
    batch = lswag.load_batch("digits", batch_size=64)
    lswag.score(model, batch, proxies=["l_swag", "zico", "nwot"])
"""
from importlib.metadata import PackageNotFoundError, version

from lswag import spaces
from lswag.data import Batch, load_batch
from lswag.errors import LswagError
from lswag.proxies import Failure
from lswag.scoring import ProxyResult, evaluate, score

try:
    __version__ = version("lswag")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["Batch", "Failure", "LswagError", "ProxyResult", "evaluate", "load_batch", "score", "spaces",
           "__version__"]
