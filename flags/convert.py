"""Flags of ``official.convert`` (its own ``FlagValues``; see ``flags/cli.py``).

``--num_classes`` / ``--image_size`` here describe the model the weights are loaded into
(defaults: the checkpoint's head, 224), not a training run, so they are not the trainer's
model-group flags of the same names."""
from absl import flags

# The architectures official.convert maps (models registry name == timm name), defined with
# the mapping in models/timm_weights.py (light: NumPy only, no Keras import).
from models.timm_weights import TIMM_ARCHS, TORCHVISION_ARCHS  # noqa: E402

REQUIRED = ("source", "arch", "checkpoint", "output")
SOURCES = ("timm", "torchvision")


def define(flag_values: flags.FlagValues) -> None:
    fv = flag_values
    flags.DEFINE_enum("source", None, list(SOURCES),
                      "where the state dict comes from", flag_values=fv)
    flags.DEFINE_string("arch", None, f"timm: {', '.join(TIMM_ARCHS)}; torchvision: "
                        f"{', '.join(TORCHVISION_ARCHS)}", flag_values=fv)
    flags.DEFINE_string("checkpoint", None, "state dict (.pth/.pt/.safetensors/.npz)",
                        flag_values=fv)
    flags.DEFINE_string("output", None, "OUT.weights.h5", flag_values=fv)
    flags.DEFINE_integer("num_classes", None,
                         "default: the checkpoint's; another value drops the fc layer",
                         flag_values=fv)
    flags.DEFINE_integer("image_size", 224,
                         "input size the model is built with (weights do not depend on it)",
                         flag_values=fv)
