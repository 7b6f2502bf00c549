"""Assemble-CNN: a TensorFlow 2 / Keras 3 reimplementation of Assemble-ResNet (Lee et al., 2020)."""
from setuptools import find_packages, setup

setup(
    name="assemble-cnn",
    version="0.1.0",
    description=(
        "Keras 3 / TensorFlow 2 reimplementation of 'Compounding the Performance Improvements "
        "of Assembled Techniques in a Convolutional Neural Network' (Lee et al., 2020)"
    ),
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["models", "models.*", "data", "data.*", "flags", "flags.*",
                                    "official", "official.*"]),
    package_data={"official": ["configs/*.cfg", "configs/ablation/*.cfg"]},
    # Core: train, evaluate, export, predict (TensorFlow backend). tensorflow-datasets stays in
    # the core (the design's package list; `tfds:NAME` sources and `make train` without the
    # shared data need it); it is imported only when a tfds: source is used.
    install_requires=[
        "tensorflow==2.21.*",
        "keras>=3.15,<3.16",
        "tensorflow-datasets>=4.9",
        "absl-py>=2.1",
        "numpy>=1.26",
        "tqdm>=4.66",
        "h5py>=3.10",  # imported directly (warm start reads .weights.h5 layouts)
    ],
    # Optional parts, named for what they enable; official/extras.py maps each import to its
    # extra, and the programs check what their flags need at start-up.
    extras_require={
        # On-the-fly ImageNet-C corruptions (official.evaluate --corruptions), and
        # python -m data.make_corruptions. data/perturbations.py imports cv2, skimage, scipy;
        # data/corruptions.py and data/make_corruptions.py read and write images with PIL.
        "robustness": ["imagecorruptions-imaug==1.1.5", "opencv-python>=4.8",
                       "scikit-image>=0.22", "scipy>=1.11", "pillow>=10"],
        # TFDS sources (`--data=tfds:NAME`). Already in the core (the design's package list);
        # the extra exists so `pip install 'assemble-cnn[tfds]'` states the intent and works.
        "tfds": ["tensorflow-datasets>=4.9"],
        # Evaluation plots (PNG); "plot" is the former name, kept for existing installs.
        "plots": ["matplotlib>=3.8"],
        "plot": ["matplotlib>=3.8"],
        # The viewer of the TensorBoard event files the trainer writes (tensorboard --logdir).
        "tensorboard": ["tensorboard>=2.20"],
        # timm weights: .safetensors files and timm hub names (downloaded on request).
        "convert": ["safetensors>=0.4", "huggingface_hub>=0.24"],
        # Reading torch state dicts (.pth / .bin); any recent torch, not pinned for users.
        "torch": ["torch>=2.1"],
        # KERAS_BACKEND=jax (CPU wheels here; on a GPU install jax[cuda12] yourself).
        "jax": ["jax>=0.4.35"],
        # The test suite: everything above, plus the references the conversion tests compare
        # against (timm, torchvision). torch/torchvision are pinned here only, because PyPI's
        # torchvision loads only beside its matching torch build.
        "test": [
            "pytest>=8",
            "pytest-xdist>=3.5",
            "jax[cpu]>=0.4.35",
            "pillow>=10",
            "matplotlib>=3.8",
            "imagecorruptions-imaug==1.1.5", "opencv-python>=4.8", "scikit-image>=0.22",
            "scipy>=1.11",
            "safetensors>=0.4", "huggingface_hub>=0.24",
        ],
        "test-torch": ["torch==2.14.1", "torchvision==0.29.1", "timm>=1.0.31"],
    },
    entry_points={
        "console_scripts": [
            "assemble-train=official.train:run",
            "assemble-evaluate=official.evaluate:run",
            "assemble-export=official.export:run",
            "assemble-predict=official.predict:run",
            "assemble-summary=official.summary:run",
        ]
    },
)
