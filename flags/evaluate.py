"""Flags of ``official.evaluate`` (its own ``FlagValues``; see ``flags/cli.py``):
the run-directory flags of ``flags/run_dir.py`` plus data, batch, dtype, corruption and
retrieval options."""
from absl import flags

from flags import run_dir
from flags import runtime

REQUIRED = ("model_dir", "data")
# --dtype values -> Keras dtype policy (used by official.evaluate.restore).
DTYPE_POLICIES = {"fp32": "float32", "float32": "float32", "bf16": "mixed_bfloat16",
                  "mixed_bfloat16": "mixed_bfloat16", "fp16": "mixed_float16",
                  "mixed_float16": "mixed_float16"}


def define(flag_values: flags.FlagValues) -> None:
    fv = flag_values
    run_dir.define(fv)
    flags.DEFINE_string("data", None, "data source (zip, zip dir, image dir, TFRecord dir, "
                        "tfds:NAME)", flag_values=fv)
    flags.DEFINE_string("split", None, "default: the run's eval split, else "
                        "validation/val/test", flag_values=fv)
    flags.DEFINE_integer("batch_size", None, "default: the run's eval batch size, else 64",
                         flag_values=fv)
    flags.DEFINE_enum("dtype", None, sorted(DTYPE_POLICIES),
                      "compute dtype (default: float32)", flag_values=fv)
    flags.DEFINE_string("corruptions", None, "all | 15 | 19 | comma separated names",
                        flag_values=fv)
    flags.DEFINE_string("severities", "1..5", "e.g. 1..5 or 1,3,5", flag_values=fv)
    flags.DEFINE_integer("seed", 0, "seed of on-the-fly corruptions", flag_values=fv)
    flags.DEFINE_string("corruption_dir", None,
                        "directory written by python -m data.make_corruptions "
                        "(default: corrupt on the fly)", flag_values=fv)
    flags.DEFINE_string("baseline_errors", None,
                        "JSON {corruption: [5 errors]} (or an eval-*.json) to normalize mCE "
                        "by; 'alexnet' forces the AlexNet ImageNet-C errors", flag_values=fv)
    flags.DEFINE_string("output_dir", None, "default: the checkpoint's directory",
                        flag_values=fv)
    flags.DEFINE_integer("max_examples", None,
                         "evaluate only the first N examples (smoke tests)", flag_values=fv)
    flags.DEFINE_integer("benchmark_steps", 10, "timed forward passes for images_per_second",
                         flag_values=fv)
    flags.DEFINE_boolean("no_progress", False, "no progress bars", flag_values=fv)
    flags.DEFINE_boolean("no_plots", False, "skip the PNG plots", flag_values=fv)
    flags.DEFINE_boolean("retrieval", False,
                         "also report Recall@1/2/4/8 of the split's images retrieving each "
                         "other, from the 'embedding' layer (else the pooled features)",
                         flag_values=fv)
    flags.DEFINE_enum("retrieval_metric", "cosine", ["cosine", "euclidean"],
                      "similarity used by --retrieval", flag_values=fv)
    flags.DEFINE_integer("retrieval_zero_shot_classes", None,
                         "zero-shot protocol: retrieve only among the classes after the "
                         "first N", flag_values=fv)
    runtime.define_host_allocator(fv)
