"""Flags of ``official.export`` (its own ``FlagValues``; see ``flags/cli.py``): the
run-directory flags of ``flags/run_dir.py`` plus the export options."""
from absl import flags

from flags import run_dir

REQUIRED = ("model_dir", "export_dir")
DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_TOP_K = 5


def define(flag_values: flags.FlagValues) -> None:
    fv = flag_values
    run_dir.define(fv)
    flags.DEFINE_string("export_dir", None, "output SavedModel directory", flag_values=fv)
    flags.DEFINE_integer("max_pixels", DEFAULT_MAX_PIXELS,
                         "reject request images with more pixels (height*width) than this",
                         flag_values=fv)
    flags.DEFINE_integer("top_k", DEFAULT_TOP_K, "k of the top-k outputs", flag_values=fv)
    flags.DEFINE_boolean("tflite", False,
                         "also write float and dynamic-range quantized TFLite models",
                         flag_values=fv)
    flags.DEFINE_boolean("overwrite", False, "replace an existing --export_dir", flag_values=fv)
    flags.DEFINE_boolean("no_verify", False,
                         "skip reloading the SavedModel and comparing it with Keras",
                         flag_values=fv)
