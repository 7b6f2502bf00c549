"""Shared pytest fixtures.

Real image data lives outside the repository, in ``$ASSEMBLE_DATA_DIR`` (default
``../shared/data`` beside the repository). When ``CI=true`` a missing data set is a test
failure; elsewhere the test is skipped with a message saying where to put the data.
"""
import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def data_root() -> pathlib.Path:
    return pathlib.Path(os.environ.get("ASSEMBLE_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))


def require_data(relative: str) -> pathlib.Path:
    """Returns ``$ASSEMBLE_DATA_DIR/relative``; fails under CI, skips elsewhere, if missing."""
    path = data_root() / relative
    if not path.exists():
        message = (f"data set {relative!r} not found at {path}: put the shared data there or "
                   f"set ASSEMBLE_DATA_DIR to the folder that holds {relative!r}")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def write_npz(source, path, n_train, n_eval, image_size=32):
    """The JAX path's ``npz:FILE`` input from an image source: ``x_train, y_train, x_eval,
    y_eval``, pre-decoded and preprocessed by ``data.build_dataset`` (training crops / eval
    crops at ``image_size``), as benchmarks/mini_ablation.py writes it for the GPU machine."""
    import numpy as np
    import data
    arrays = {}
    for split, key, n in (("train", "train", n_train), ("val", "eval", n_eval)):
        ds = data.build_dataset(str(source), split, training=(split == "train"), batch_size=n,
                                image_size=image_size, seed=0)
        x, y = next(iter(ds))
        arrays[f"x_{key}"], arrays[f"y_{key}"] = x.numpy(), y.numpy()
    np.savez(path, **arrays)
    return arrays


@pytest.fixture
def shared_data():
    """Fixture form of :func:`require_data`: ``shared_data("imagenette2-224")``."""
    return require_data


@pytest.fixture(autouse=True)
def _reset_keras_policy():
    """Tests that switch the global dtype policy must not leak it into other tests."""
    yield
    try:
        import keras
        keras.config.set_dtype_policy("float32")
    except ImportError:  # pragma: no cover
        pass
