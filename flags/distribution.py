"""Distribution flags (-> ``RunConfig.distribution``)."""
from absl import flags

FIELDS = {
    "distribution_strategy": "distribution.strategy",
    "num_gpus": "distribution.num_gpus",
    "tpu": "distribution.tpu",
    "sync_bn": "distribution.sync_bn",
}


def define():
    flags.DEFINE_enum("distribution_strategy", None,
                      ["off", "one_device", "mirrored", "multi_worker_mirrored", "tpu"],
                      "tf.distribute strategy (TensorFlow backend; workers read TF_CONFIG). KERAS_BACKEND=jax: "
                      "off, one_device, or mirrored (a device mesh over the local devices, sync BN).")
    flags.DEFINE_integer("num_gpus", None, "GPUs for one_device/mirrored (0 = CPU; JAX mirrored: the first N accelerators).")
    flags.DEFINE_string("tpu", None, "TPU name/address (required by --distribution_strategy=tpu).")
    flags.DEFINE_boolean("sync_bn", None, "Synchronized (cross-replica) batch norm; default per-replica (always on under JAX mirrored).")
