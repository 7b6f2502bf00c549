"""Flags selecting a trained run and its checkpoint (or weights), shared by
``official.evaluate``, ``official.export`` and ``official.predict`` (defined into the
program's own ``FlagValues``; see ``flags/cli.py``). The model itself is never described by
flags there: it is rebuilt from the run's ``run_config.json``
(``official.checkpoints.restore_model``) or from the metadata that travels with ``--weights``
(``official.checkpoints.restore_weights``)."""
from absl import flags


def define(flag_values: flags.FlagValues) -> None:
    flags.DEFINE_string("model_dir", None, "training run directory (run_config.json)",
                        flag_values=flag_values)
    flags.DEFINE_string("which", "latest", "latest | best | a checkpoint name",
                        flag_values=flag_values)
    flags.DEFINE_string("weights", None,
                        "instead of --model_dir: a run or checkpoint dir, .weights.h5 (+ the JSON "
                        "official.convert writes), .keras, a timm state dict "
                        "(.safetensors/.pth/.bin) or a timm name (resnet50d, "
                        "timm/resnet50d.ra2_in1k; downloaded with huggingface_hub). The "
                        "network and its preprocessing come from the weights' metadata",
                        flag_values=flag_values)


# --model_dir can be replaced by --weights (flags.cli.parse(alternatives=...)).
ALTERNATIVES = {"model_dir": "weights"}
