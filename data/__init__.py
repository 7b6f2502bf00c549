"""Input pipeline (issue #3): sources, the paper's preprocessing, ``build_dataset``.

Importing ``data`` imports nothing heavy: the public names below are loaded on first use
(PEP 562), so ``data.mixing`` (``keras.ops`` only) and ``data.corruptions`` (numpy) can be
imported on a machine without TensorFlow, such as the JAX-only GPU machine.
"""
import importlib

_EXPORTS = {
    "build_dataset": "data.pipeline",
    "DatasetStats": "data.pipeline",
    "use_pooling_cpu_allocator": "data.pipeline",
    "inspect_source": "data.sources",
    "resolve_eval_split": "data.sources",
    "SourceInfo": "data.sources",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'data' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
