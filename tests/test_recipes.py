"""The packaged recipes (official/configs/*.cfg) against the paper and the original code.

* The --teacher help names what ``official.train.load_teacher`` accepts.
"""
import pytest


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
