"""Optimization flags (-> ``RunConfig.optimization``)."""
from absl import flags

FIELDS = {
    "batch_size": "optimization.batch_size",
    "epochs": "optimization.epochs",
    "train_steps": "optimization.train_steps",
    "momentum": "optimization.momentum",
    "nesterov": "optimization.nesterov",
    "base_learning_rate": "optimization.base_learning_rate",
    "lr_scaling": "optimization.lr_scaling",
    "lr_schedule": "optimization.lr_schedule",
    "warmup_epochs": "optimization.warmup_epochs",
    "piecewise_boundaries": "optimization.piecewise_boundaries",
    "piecewise_rates": "optimization.piecewise_rates",
    "exponential_decay_epochs": "optimization.exponential_decay_epochs",
    "exponential_decay_rate": "optimization.exponential_decay_rate",
    "weight_decay": "optimization.weight_decay",
    "weight_decay_mode": "optimization.weight_decay_mode",
    "ema_decay": "optimization.ema_decay",
    "dtype": "optimization.dtype",
    "jit_compile": "optimization.jit_compile",
}


def define():
    flags.DEFINE_integer("batch_size", None, "GLOBAL batch size, split over replicas (default 1024).")
    flags.DEFINE_float("epochs", None, "Training epochs (default 120).")
    flags.DEFINE_integer("train_steps", None, "Total steps; overrides --epochs (schedules follow it).")
    flags.DEFINE_float("momentum", None, "SGD momentum (default 0.9).")
    flags.DEFINE_boolean("nesterov", None, "Nesterov momentum (default false, as the paper).")
    flags.DEFINE_float("base_learning_rate", None, "Peak learning rate (default 0.4).")
    flags.DEFINE_enum("lr_scaling", None, ["none", "linear"],
                      "none (paper): lr = base; linear: lr = base * batch_size / 256.")
    flags.DEFINE_enum("lr_schedule", None, ["cosine", "piecewise", "exponential", "constant"],
                      "Decay after warm-up (default cosine to 0).")
    flags.DEFINE_float("warmup_epochs", None, "Linear warm-up epochs (default 5).")
    flags.DEFINE_list("piecewise_boundaries", None, "Piecewise: boundary epochs.")
    flags.DEFINE_list("piecewise_rates", None, "Piecewise: LR multipliers (one more than boundaries).")
    flags.DEFINE_float("exponential_decay_epochs", None, "Exponential: epochs per decay (default 2.4).")
    flags.DEFINE_float("exponential_decay_rate", None, "Exponential: factor (default 0.97).")
    flags.DEFINE_float("weight_decay", None, "Weight decay (default 1e-4).")
    flags.DEFINE_enum("weight_decay_mode", None, ["l2_loss", "decoupled"],
                      "l2_loss (paper, default): wd * sum(w^2)/2 over non-BN weights added to the loss; "
                      "decoupled: keras SGD weight_decay (w -= lr*wd*w), BN excluded.")
    flags.DEFINE_float("ema_decay", None, "Weight EMA decay; 0 = off (default).")
    flags.DEFINE_enum("dtype", None, ["fp32", "fp16", "bf16"],
                      "fp32, or mixed precision (fp16 with dynamic loss scaling, bf16).")
    flags.DEFINE_boolean("jit_compile", None, "XLA-compile the per-replica train step.")
