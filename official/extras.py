"""Optional dependencies: which extra of ``setup.py`` brings each, checked when a program starts.

The core install (``pip install assemble-cnn``) trains, evaluates and exports. Everything else
is an extra, named for what it enables::

    pip install 'assemble-cnn[robustness]'   # on-the-fly corruptions, data.make_corruptions
    pip install 'assemble-cnn[plots]'        # evaluation plots (PNG)
    pip install 'assemble-cnn[tensorboard]'  # the viewer of the event files the trainer writes
    pip install 'assemble-cnn[convert]'      # timm .safetensors weights and hub names
    pip install 'assemble-cnn[torch]'        # reading torch state dicts (.pth / .bin)
    pip install 'assemble-cnn[jax]'          # KERAS_BACKEND=jax

A program calls :func:`require` with what its flags will use before it does any work, so a
missing package stops it at start-up with the ``pip install`` line, not after an hour of
evaluation (the failure mode of a lazy import at the end of a run).
``tests/test_install.py`` checks that every module the programs import is declared in
``setup.py``, and that each extra named here exists there.
"""
from __future__ import annotations

import importlib.util
from typing import Dict, Iterable, Tuple

#: import name -> (extra that installs it, what needs it)
OPTIONAL: Dict[str, Tuple[str, str]] = {
    "imagecorruptions": ("robustness", "corrupting images (--corruptions without "
                                       "--corruption_dir, python -m data.make_corruptions)"),
    "cv2": ("robustness", "the corruption functions"),
    "skimage": ("robustness", "the corruption functions"),
    "scipy": ("robustness", "the corruption functions"),
    "PIL": ("robustness", "reading and writing images for the corruption functions"),
    "matplotlib": ("plots", "evaluation plots (pass --no_plots to skip them)"),
    "tensorboard": ("tensorboard", "viewing the trainer's event files"),
    "safetensors": ("convert", "reading .safetensors weights"),
    "huggingface_hub": ("convert", "downloading timm weights by hub name"),
    "torch": ("torch", "reading torch state dicts (.pth / .bin)"),
    "jax": ("jax", "KERAS_BACKEND=jax"),
}


class MissingDependency(ImportError):
    """An optional package a program needs for the flags it was given is not installed."""


def install_hint(module: str) -> str:
    """``pip install 'assemble-cnn[EXTRA]'`` for ``module`` (a key of :data:`OPTIONAL`)."""
    extra, _ = OPTIONAL[module]
    return f"pip install 'assemble-cnn[{extra}]'"


def missing(modules: Iterable[str]) -> list:
    """The names in ``modules`` that cannot be imported (found by ``find_spec``, not imported)."""
    out = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # ValueError: sys.modules[name] is None (blocked)
            found = False
        if not found:
            out.append(name)
    return out


def require(*modules: str, program: str = "this program") -> None:
    """Raises :class:`MissingDependency` naming every missing module, what needs it and the
    ``pip install`` line of its extra. Call it before any work is done."""
    absent = missing(modules)
    if not absent:
        return
    lines = [f"{program} needs {name} for {OPTIONAL[name][1]}: {install_hint(name)}"
             for name in absent]
    raise MissingDependency("\n".join(lines))
