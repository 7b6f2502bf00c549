"""Custom Keras layers of Assemble-CNN (Lee et al., 2020), one file per layer family.

All layers are NHWC, use ``keras.ops`` only (TensorFlow, JAX and PyTorch backends), are
registered for serialization under the package ``"assemble"`` and follow the layer's compute
dtype under mixed precision.
"""
from models.layers.blur_pool import BlurPool2D, binomial_filter_2d
from models.layers.drop_block import DropBlock2D
from models.layers.pooling import GeneralizedMeanPooling2D
from models.layers.selective_kernel import SelectiveKernel
from models.layers.squeeze_excite import SqueezeExcite

__all__ = [
    "BlurPool2D",
    "DropBlock2D",
    "GeneralizedMeanPooling2D",
    "SelectiveKernel",
    "SqueezeExcite",
    "binomial_filter_2d",
]
