"""Regularization flags (-> ``RunConfig.regularization``)."""
from absl import flags

FIELDS = {
    "label_smoothing": "regularization.label_smoothing",
    "mixing": "regularization.mixing",
    "mixing_alpha": "regularization.mixing_alpha",
    "mixing_per_sample": "regularization.mixing_per_sample",
    "mixing_form": "regularization.mixing_form",
    "drop_block_keep_prob": "regularization.drop_block_keep_prob",
    "distillation": "regularization.distillation",
    "distillation_weight": "regularization.distillation_weight",
    "distillation_temperature": "regularization.distillation_temperature",
    "teacher": "regularization.teacher",
}


def define():
    flags.DEFINE_float("label_smoothing", None, "Label smoothing epsilon (paper 0.1), default 0.")
    flags.DEFINE_enum("mixing", None, ["none", "mixup", "cutmix"], "Batch mixing (data.mixing.mix_batch).")
    flags.DEFINE_float("mixing_alpha", None, "Beta(alpha, alpha) of mixup/CutMix (default 0.2).")
    flags.DEFINE_boolean("mixing_per_sample", None, "One lambda per sample (default) instead of per batch.")
    flags.DEFINE_enum("mixing_form", None, ["reverse", "double_batch"],
                      "reverse: B -> B (default); double_batch: 2B -> B, the paper's mixup_type=1 "
                      "(the loss is averaged over the B mixed samples).")
    flags.DEFINE_list("drop_block_keep_prob", None,
                      "DropBlock keep-prob start,end, linear over the run (paper 1.0,0.9).")
    flags.DEFINE_enum("distillation", None, ["none", "offline", "online"],
                      "offline: teacher logits stored in TFRecords; online: run --teacher.")
    flags.DEFINE_float("distillation_weight", None, "Weight of the KD term (paper 1).")
    flags.DEFINE_float("distillation_temperature", None, "KD temperature T (paper kd_temp=1).")
    flags.DEFINE_string("teacher", None, "Online KD teacher: a run dir (its best checkpoint), a .keras "
                        "file or a SavedModel dir (taking preprocessed images).")
