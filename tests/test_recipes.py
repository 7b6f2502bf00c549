"""The packaged recipes (official/configs/*.cfg) against the paper and the original code.

* Each Table 7 recipe E0-E12 trains the paper's number of epochs at 224 px and evaluates at
  the paper's input size (Lee et al. 2020, Table 7, as transcribed in
  ../shared/reference/paper-tables.md; record: ``models.TABLE7_PAPER``).
* ``models.TABLE7_PAPER`` equals that transcription, row by row (when the file is present).
* The fine-tuning recipes evaluate as the original (clovaai/assembled-cnn
  scripts/finetuning_assemble_on_food101.sh sets no --preprocessing_type, so the default
  'imagenet'; finetuning_vanila_on_food101.sh sets it: resize the short side to
  int(224 / 0.875) = 256, central crop 224) and have the scripts' optimization settings.
* The --teacher help names what ``official.train.load_teacher`` accepts.
"""
import os
import re

import pytest

from conftest import REPO_ROOT, data_root

RECIPE_DIR = REPO_ROOT / "official" / "configs"


def _parse_recipe(name):
    """RunConfig of a packaged recipe, parsed by the real flag definitions (as the CLI does)."""
    from absl import flags as absl_flags
    import flags
    flags.define_all()
    absl_flags.FLAGS.unparse_flags()
    try:
        absl_flags.FLAGS(["prog", f"--flagfile={RECIPE_DIR / (name + '.cfg')}"])
        return flags.build_run_config(absl_flags.FLAGS)
    finally:
        absl_flags.FLAGS.unparse_flags()


# ------------------------------------------------------------------- Table 7 recipes
@pytest.mark.parametrize("row", range(13))
def test_table7_recipe_epochs_and_eval_size_are_the_papers(row):
    import models
    from data.preprocessing import eval_image_size
    paper = models.TABLE7_PAPER[f"table7_e{row}"]
    assert paper.row == f"E{row}"
    cfg = _parse_recipe(f"E{row}")
    assert cfg.model.name == f"table7_e{row}"
    assert cfg.optimization.epochs == paper.epochs, f"E{row} epochs"
    assert cfg.model.image_size == paper.train_size, f"E{row} training size"
    assert eval_image_size(cfg.model.image_size, cfg.data.eval_preprocess) == paper.eval_size, \
        f"E{row} evaluation size ({cfg.data.eval_preprocess!r})"


def _paper_tables_file():
    """../shared/reference/paper-tables.md; fails under CI, skips elsewhere, if missing
    (as conftest.require_data)."""
    path = data_root().parent / "reference" / "paper-tables.md"
    if not path.exists():
        message = (f"the paper's tables are not at {path}: put shared/reference/paper-tables.md "
                   "beside the data folder (ASSEMBLE_DATA_DIR's sibling 'reference')")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def test_table7_paper_record_equals_the_transcribed_table():
    import models
    text = _paper_tables_file().read_text(encoding="utf-8")
    section = text.split("## Table 7", 1)[1].split("\n## ", 1)[0]
    m = re.search(r"training is at (\d+) in every row", section)
    assert m, "the Table 7 section no longer states the training size"
    train_size = int(m.group(1))
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 10 or not re.fullmatch(r"E\d+", cells[0]):
            continue
        exp, _, _, epochs, size, top1, _, mce, _, ips = cells
        rows[f"table7_{exp.lower()}"] = models.Table7Row(
            exp, int(epochs), train_size, int(size), float(top1), float(mce), int(ips))
    assert len(rows) == 13, sorted(rows)
    assert rows == models.TABLE7_PAPER


# ------------------------------------------------------------------- fine-tuning recipes
@pytest.mark.parametrize("name", ["finetune", "finetune_food101"])
def test_finetune_recipe_evaluates_with_the_originals_0875_crop(name):
    from data.preprocessing import eval_sizes
    cfg = _parse_recipe(name)
    size = cfg.model.image_size
    assert size == 224
    # The original's default eval preprocessing: short side int(224 / 0.875) = 256, crop 224.
    assert eval_sizes(size, cfg.data.eval_preprocess) == (int(224 / 0.875), 224) == (256, 224)


@pytest.mark.parametrize("name", ["finetune", "finetune_food101"])
def test_finetune_recipes_have_the_original_scripts_settings(name):
    """Both FGVC scripts of clovaai/assembled-cnn (finetuning_vanila_on_food101.sh and
    finetuning_assemble_on_food101.sh) pass --batch_size=256 --base_learning_rate=0.01
    --learning_rate_decay_type=cosine --lr_warmup_epochs=5 --train_epochs=100
    --bn_momentum=0.966 --weight_decay=0.001 --epochs_between_evals=10 (values typed here from
    the scripts). The general recipe adds nothing else: no mixing, AutoAugment, label
    smoothing or DropBlock (the vanilla script has none)."""
    cfg = _parse_recipe(name)
    o = cfg.optimization
    assert (o.batch_size, o.base_learning_rate, o.lr_scaling, o.lr_schedule, o.warmup_epochs,
            o.epochs) == (256, 0.01, "none", "cosine", 5, 100)
    assert cfg.model.overrides["bn_momentum"] == 0.966
    assert (o.weight_decay, o.weight_decay_mode) == (1e-3, "l2_loss")
    assert cfg.runtime.eval_every_epochs == 10
    if name == "finetune":
        r = cfg.regularization
        assert (r.mixing, r.label_smoothing, cfg.data.autoaugment, r.drop_block_keep_prob) == (
            "none", 0.0, None, [1.0, 0.9])   # defaults; DropBlock acts only on nets built with it
        assert cfg.data.val_fraction is None   # flat trees: data.sources.DEFAULT_VAL_FRACTION


# ------------------------------------------------------------------- --teacher help
def test_teacher_help_names_what_load_teacher_accepts(tmp_path):
    import keras
    from absl import flags as absl_flags
    import flags
    from official import train
    flags.define_all()
    help_text = absl_flags.FLAGS["teacher"].help
    assert ".weights.h5" not in help_text
    for accepted in ("run dir", ".keras", "SavedModel"):
        assert accepted in help_text, (accepted, help_text)
    # What the loader does with the two file kinds the help used to offer.
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.save(str(tmp_path / "t.keras"))
    model.save_weights(str(tmp_path / "t.weights.h5"))
    assert train.load_teacher(str(tmp_path / "t.keras")).output_shape == (None, 3)
    with pytest.raises(train.ConfigError, match="expected a run directory"):
        train.load_teacher(str(tmp_path / "t.weights.h5"))
