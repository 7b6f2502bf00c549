"""Flags selecting a trained run and its checkpoint, shared by ``official.evaluate`` and
``official.export`` (defined into the program's own ``FlagValues``; see ``flags/cli.py``).
The model itself is never described by flags there: it is rebuilt from the run's
``run_config.json`` (``official.checkpoints.restore_model``)."""
from absl import flags


def define(flag_values: flags.FlagValues) -> None:
    flags.DEFINE_string("model_dir", None, "training run directory (run_config.json)",
                        flag_values=flag_values)
    flags.DEFINE_string("which", "latest", "latest | best | a checkpoint name",
                        flag_values=flag_values)
