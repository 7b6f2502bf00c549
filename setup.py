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
    install_requires=[
        "tensorflow==2.21.*",
        "keras>=3.15,<3.16",
        "tensorflow-datasets>=4.9",
        "absl-py>=2.1",
        "numpy>=1.26",
        "tqdm>=4.66",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-xdist>=3.5",
            "jax[cpu]>=0.4.35",
            "pillow>=10",
            "matplotlib>=3.8",
            "imagecorruptions-imaug==1.1.5",
        ],
        "plot": ["matplotlib>=3.8"],
        # Weight conversion from timm / torchvision state dicts, and its tests. timm imports
        # torchvision, and PyPI's torchvision only loads beside the matching torch build.
        "convert": ["torch==2.14.1", "torchvision==0.29.1", "timm>=1.0.31"],
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
