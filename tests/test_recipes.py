"""The packaged recipes (official/configs/*.cfg) against the paper and the original code.

* ``models.TABLE7_PAPER`` equals Table 7 (Lee et al. 2020) as transcribed in
  ../shared/reference/paper-tables.md, row by row (when the file is present).
* The --teacher help names what ``official.train.load_teacher`` accepts.
"""
import os
import re

import pytest

from conftest import data_root


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
