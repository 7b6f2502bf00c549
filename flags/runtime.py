"""Runtime flags (-> ``RunConfig.runtime``, plus program-only flags in ``RUNTIME_ONLY``)."""
from absl import flags

FIELDS = {
    "model_dir": "runtime.model_dir",
    "init_checkpoint": "runtime.init_checkpoint",
    "weights": "runtime.init_checkpoint",  # synonym of --init_checkpoint (official.train checks they agree)
    "checkpoint_every_steps": "runtime.checkpoint_every_steps",
    "keep_checkpoints": "runtime.keep_checkpoints",
    "eval_every_epochs": "runtime.eval_every_epochs",
    "eval_steps": "runtime.eval_steps",
    "log_every_steps": "runtime.log_every_steps",
    "seed": "runtime.seed",
    "deterministic": "runtime.deterministic",
    "tensorboard": "runtime.tensorboard",
    "progress_bar": "runtime.progress_bar",
}
RUNTIME_ONLY = ("stop_after_steps", "dump_final_weights", "host_allocator")


def define():
    flags.DEFINE_string("model_dir", None, "Run directory: run_config.json, checkpoints, TensorBoard.")
    flags.DEFINE_string("init_checkpoint", None,
                        "Warm start (fine-tuning): a run dir, checkpoint dir or .weights.h5; all but the head.")
    flags.DEFINE_string("weights", None,
                        "Warm start (fine-tuning), all but the head, from: a run or checkpoint dir, "
                        ".weights.h5 (+ the JSON official.convert writes), .keras, a timm state dict "
                        "(.safetensors/.pth/.bin) or a timm name (resnet50d, timm/resnet50d.ra2_in1k; "
                        "downloaded). The weights' network, normalization, image size and eval "
                        "preprocessing are used unless given; a contradicting flag is an error. "
                        "Synonym of --init_checkpoint.")
    flags.DEFINE_integer("checkpoint_every_steps", None, "Checkpoint period in steps (plus every epoch end).")
    flags.DEFINE_integer("keep_checkpoints", None, "Keep the last K checkpoints (plus the best).")
    flags.DEFINE_float("eval_every_epochs", None, "Evaluate every N epochs (and at the end); 0 = only at the end.")
    flags.DEFINE_integer("eval_steps", None, "Eval batches (default: the whole split; 0 = no evaluation).")
    flags.DEFINE_integer("log_every_steps", None, "TensorBoard/console scalar period.")
    flags.DEFINE_integer("seed", None, "Seed of initialization and in-step randomness (default 0).")
    flags.DEFINE_boolean("deterministic", None, "tf.config.experimental.enable_op_determinism().")
    flags.DEFINE_boolean("tensorboard", None, "Write TensorBoard scalars (TensorFlow path).")
    flags.DEFINE_boolean("progress_bar", None, "Console progress bar with ETA.")
    # Program-only (not part of the run config):
    flags.DEFINE_integer("stop_after_steps", None, "Stop (with a checkpoint) after this many steps of THIS "
                         "invocation, without changing the schedule (tests, preemptible jobs).")
    flags.DEFINE_string("dump_final_weights", None, "Write the final model weights to this .npz (tests).")
    define_host_allocator(flags.FLAGS)


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


def apply_host_allocator(choice: str, quiet: bool = False) -> bool:
    """Makes the ``--host_allocator`` choice; call before TensorFlow runs its first op.
    Returns True when the pooling allocator was switched on by this call."""
    if choice != "bfc":
        return False
    import importlib.util
    import logging

    if importlib.util.find_spec("tensorflow") is None:
        # The JAX path on a machine without TensorFlow (KERAS_BACKEND=jax, npz input): there is
        # no TensorFlow allocator to choose, and data.pipeline would import TensorFlow.
        logging.getLogger("flags.runtime").info(
            "host allocator: TensorFlow is not installed; --host_allocator has nothing to choose")
        return False
    import data   # lazily: flag modules stay light
    switched = data.use_pooling_cpu_allocator(quiet=quiet)
    if switched:
        logging.getLogger("flags.runtime").info(
            "host allocator: TensorFlow's pooling BFC allocator (--host_allocator=bfc)")
    return switched
