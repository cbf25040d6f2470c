"""lswag: zero-cost neural architecture search with L-SWAG and the proxies it is compared with.

    import lswag
    model = lswag.spaces.get("nb201").build("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|")
    batch = lswag.load_batch("digits", batch_size=64)
    lswag.score(model, batch, proxies=["l_swag", "zico", "nwot"])

The names below are imported when first used, so that ``import lswag`` (and the command line's
``--help``) costs no torch import until something needs it.
"""
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lswag")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

#: public name -> the module that defines it
_EXPORTS = {"Batch": "lswag.data", "load_batch": "lswag.data", "LswagError": "lswag.errors",
            "Failure": "lswag.proxies", "ProxyResult": "lswag.scoring", "evaluate": "lswag.scoring",
            "score": "lswag.scoring", "space": "lswag.spaces.family", "spaces": "lswag.spaces"}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lswag' has no attribute {name!r}")
    module = import_module(_EXPORTS[name])
    value = module if module.__name__ == f"lswag.{name}" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
