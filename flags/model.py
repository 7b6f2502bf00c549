"""Model flags (-> ``RunConfig.model``)."""
from absl import flags

FIELDS = {
    "recipe": "recipe",
    "model": "model.name",
    "model_overrides": "model.overrides",
    "num_classes": "model.num_classes",
    "image_size": "model.image_size",
    "zero_gamma": "model.zero_gamma",
}


def define():
    flags.DEFINE_string("recipe", None, "Recipe name recorded in run_config.json (set by the recipe files).")
    flags.DEFINE_string("model", None, "Model name for models.build_model (default resnet50).")
    flags.DEFINE_string("model_overrides", None,
                        "Builder overrides, JSON ('{\"width\": 0.5}') or 'k=v,k=v'; merged over the recipe's.")
    flags.DEFINE_integer("num_classes", None, "Classes of the head (default: from the data source).")
    flags.DEFINE_integer("image_size", None, "Training/eval input size S (S x S x 3), default 224.")
    flags.DEFINE_boolean("zero_gamma", None, "Zero-init the last BN gamma of every residual block.")
