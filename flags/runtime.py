"""Program-only trainer flags (not stored in the run config, ``RUNTIME_ONLY``) and the
``--host_allocator`` flag the trainer and ``official.evaluate`` share."""
from absl import flags

RUNTIME_ONLY = ("stop_after_steps", "dump_final_weights", "host_allocator")


def define(flag_values=None):
    fv = flag_values if flag_values is not None else flags.FLAGS
    flags.DEFINE_integer("stop_after_steps", None, "Stop (with a checkpoint) after this many steps of "
                         "THIS invocation, without changing the schedule (tests, preemptible jobs).",
                         flag_values=fv)
    flags.DEFINE_string("dump_final_weights", None, "Write the final model weights to this .npz "
                        "(tests).", flag_values=fv)
    define_host_allocator(fv)


HOST_ALLOCATOR_HELP = (
    "TensorFlow's host (CPU) memory allocator: 'bfc' pools and reuses memory (measured: input "
    "pipeline ~30 % and ResNet-50 CPU training steps 24-33 % faster, assemble_resnet50 about the "
    "same, 0-10 % more peak memory; docs/BENCHMARKS.md), "
    "'default' is TensorFlow's (glibc malloc). Chosen when this program starts TensorFlow; no "
    "effect when TensorFlow already runs in the process (a Python caller). The environment "
    "variable TF_CPU_ALLOCATOR_USE_BFC=false also keeps the default.")


def define_host_allocator(flag_values) -> None:
    flags.DEFINE_enum("host_allocator", "bfc", ["bfc", "default"], HOST_ALLOCATOR_HELP,
                      flag_values=flag_values)
