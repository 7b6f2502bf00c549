"""Input pipeline (issue #3): sources, the paper's preprocessing, ``build_dataset``.

Light on purpose: importing ``data`` imports only TensorFlow and numpy. The augmentation and
mixing modules (``data.autoaugment``, ``data.mixing``) are imported only when used.
"""
from data.pipeline import DatasetStats, build_dataset
from data.sources import SourceInfo, inspect_source, resolve_eval_split

__all__ = ["build_dataset", "inspect_source", "resolve_eval_split", "SourceInfo", "DatasetStats"]
