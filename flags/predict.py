"""Flags of ``official.predict`` (its own ``FlagValues``; see ``flags/cli.py``): the
run-directory flags of ``flags/run_dir.py`` (``--model_dir`` or ``--weights``, ``--which``)
plus the output options. The images are the positional arguments."""
from absl import flags

from flags import run_dir

REQUIRED = ("model_dir",)  # or --weights (run_dir.ALTERNATIVES)
DEFAULT_TOP_K = 5
DEFAULT_BATCH_SIZE = 16


def define(flag_values: flags.FlagValues) -> None:
    fv = flag_values
    run_dir.define(fv)
    flags.DEFINE_integer("top_k", DEFAULT_TOP_K, "classes printed per image (at most the "
                         "model's class count)", flag_values=fv)
    flags.DEFINE_enum("format", "table", ["table", "json"],
                      "table: a text table; json: one JSON object per image (JSON lines)",
                      flag_values=fv)
    flags.DEFINE_integer("batch_size", DEFAULT_BATCH_SIZE, "images per forward pass",
                         flag_values=fv)
