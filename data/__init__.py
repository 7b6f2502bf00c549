"""Input pipeline (issue #3): sources, the paper's preprocessing, ``build_dataset``.

Importing ``data`` imports nothing heavy: the public names below are loaded on first use
(PEP 562), so ``data.mixing`` (``keras.ops`` only) and ``data.corruptions`` (numpy) can be
imported on a machine without TensorFlow, such as the JAX-only GPU machine.
"""
import importlib
import importlib.util
import logging

_EXPORTS = {
    "build_dataset": "data.pipeline",
    "InputSpec": "data.spec",
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


def apply_host_allocator(choice: str, quiet: bool = False) -> bool:
    """Makes the ``--host_allocator`` choice (``flags.runtime``); call before TensorFlow runs
    its first op. Returns True when the pooling allocator was switched on by this call."""
    if choice != "bfc":
        return False
    if importlib.util.find_spec("tensorflow") is None:
        # The JAX path on a machine without TensorFlow (KERAS_BACKEND=jax, npz input): there is
        # no TensorFlow allocator to choose, and data.pipeline would import TensorFlow.
        logging.getLogger("data").info(
            "host allocator: TensorFlow is not installed; --host_allocator has nothing to choose")
        return False
    switched = importlib.import_module("data.pipeline").use_pooling_cpu_allocator(quiet=quiet)
    if switched:
        logging.getLogger("data").info(
            "host allocator: TensorFlow's pooling BFC allocator (--host_allocator=bfc)")
    return switched
