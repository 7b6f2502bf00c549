"""Data flags (-> ``RunConfig.data``)."""
from absl import flags

FIELDS = {
    "data": "data.source",
    "train_split": "data.train_split",
    "eval_split": "data.eval_split",
    "autoaugment": "data.autoaugment",
    "randaugment": "data.randaugment",
    "device_augment": "data.device_augment",
    "augment_on": "data.augment_on",
    "normalization": "data.normalization",
    "eval_preprocess": "data.eval_preprocess",
    "label_offset": "data.label_offset",
    "data_seed": "data.seed",
    "val_fraction": "data.val_fraction",
    "split_seed": "data.split_seed",
    "eval_batch_size": "data.eval_batch_size",
}


def define():
    flags.DEFINE_string("data", None, "Any source data.build_dataset accepts (zip/image folder, "
                        "TFRecords, tfds:NAME); under the JAX backend without TensorFlow: npz:FILE.")
    flags.DEFINE_string("train_split", None, "Training split (default 'train').")
    flags.DEFINE_string("eval_split", None, "Eval split (default: first of validation/val/test).")
    flags.DEFINE_string("autoaugment", None, "AutoAugment policy name (e.g. 'imagenet'), default none.")
    flags.DEFINE_string("randaugment", None, "RandAugment spec, default none.")
    flags.DEFINE_enum("device_augment", None, ["none", "crop_flip"],
                      "Random-resized crop + flip on the accelerator for pre-decoded npz:FILE input "
                      "(JAX path; tf.data sources crop on the host): crop_flip = the paper's crop and "
                      "flip (data.device_augment). With --augment_on=device it is the crop/flip part of "
                      "the device augmentation. Default none.")
    flags.DEFINE_enum("augment_on", None, ["host", "device"],
                      "Where --autoaugment/--randaugment run: host = per image in tf.data (default; "
                      "the faster choice on a CPU, docs/BENCHMARKS.md), device = batched keras.ops "
                      "inside the training step (data.device_augment.DeviceAugment), on either backend: "
                      "tf.data then only decodes, crops and flips; with npz:FILE input (JAX path) the "
                      "crop/flip is --device_augment=crop_flip.")
    flags.DEFINE_string("normalization", None, "Image normalization (default 'mean').")
    flags.DEFINE_string("eval_preprocess", None, "Eval preprocessing (default 'imagenet').")
    flags.DEFINE_integer("label_offset", None, "TFRecords only: their stored labels are class + "
                         "label_offset (1 for ImageNet TFRecords with background 0, labels "
                         "1..1000); it is subtracted, the model has the true class count, and "
                         "teacher logits with num_classes + label_offset values lose their first "
                         "label_offset (default 0).")
    flags.DEFINE_integer("data_seed", None, "Seed of shuffling/augmentation (default 0).")
    flags.DEFINE_float("val_fraction", None, "Flat class-folder trees only (--data=DIR or ZIP of "
                       "<class>/<image>, no split folders): the fraction of each class held out "
                       "as the evaluation split, round(n * fraction), at least 1 and at most "
                       "n - 1 images per class (default 0.1). A source with its own split "
                       "folders refuses it.")
    flags.DEFINE_integer("split_seed", None, "Seed of the --val_fraction split (default 0); the "
                         "split depends only on it and the file names, not on --data_seed.")
    flags.DEFINE_integer("eval_batch_size", None, "Eval batch (default: the training batch).")
