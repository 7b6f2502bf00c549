"""data.device_augment: random-resized crop + flip on the accelerator (keras.ops).

References: the identity and a mirror image (hand-known), ``tf.image.resize`` (bilinear,
half-pixel centres) of an integer crop box, and the sampling ranges of the paper's
Inception crop (area 0.05-1, aspect 3/4-4/3)."""
import numpy as np
import pytest
import keras
from keras import ops

from data import device_augment as da


def _images(b=3, h=16, w=12, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, size=(b, h, w, 3)).astype("float32")


def _apply(x, boxes, flip):
    t = da.crop_resize_transforms(ops.convert_to_tensor(np.asarray(boxes, "float32")), x.shape[1], x.shape[2],
                                  ops.convert_to_tensor(np.asarray(flip)))
    return np.asarray(ops.image.affine_transform(x, t, interpolation="bilinear", fill_mode="nearest"))


def test_whole_image_box_is_identity_and_flip_mirrors():
    x = _images()
    box = [[0, 0, 16, 12]] * 3
    np.testing.assert_allclose(_apply(x, box, [False] * 3), x, atol=1e-3)
    np.testing.assert_allclose(_apply(x, box, [True] * 3), x[:, :, ::-1], atol=1e-3)


def test_crop_matches_tf_image_resize_of_the_crop():
    import tensorflow as tf
    x = _images(b=2, h=16, w=16)
    # bottom-right 8x8 box (2x upsampling) and a 12x6 box at the top-left corner
    boxes = [[8, 8, 8, 8], [0, 0, 12, 6]]
    out = _apply(x, boxes, [False, False])
    for i, (y0, x0, h, w) in enumerate(boxes):
        ref = tf.image.resize(x[i, y0:y0 + h, x0:x0 + w], (16, 16), method="bilinear", antialias=False).numpy()
        # the affine form reads the image around the box where tf.image.resize clamps to the
        # crop's edge: they agree except on an output edge whose box edge lies inside the image
        r0, r1 = (1 if y0 > 0 else 0), (15 if y0 + h < 16 else 16)
        c0, c1 = (1 if x0 > 0 else 0), (15 if x0 + w < 16 else 16)
        np.testing.assert_allclose(out[i, r0:r1, c0:c1], ref[r0:r1, c0:c1], atol=1e-2)
        assert np.abs(out[i] - ref).max() > 1.0  # ... where they do differ (the test can fail)
    # the mirrored crop is the mirror of the crop
    out_f = _apply(x, boxes, [True, True])
    np.testing.assert_allclose(out_f[1], out[1, :, ::-1], atol=1e-2)


def test_sampled_boxes_follow_the_paper_ranges():
    n, h, w = 4000, 32, 32
    boxes = np.asarray(da.sample_boxes(n, h, w, keras.random.SeedGenerator(0)))
    y0, x0, bh, bw = boxes.T
    assert (y0 >= 0).all() and (x0 >= 0).all() and (y0 + bh <= h + 1e-4).all() and (x0 + bw <= w + 1e-4).all()
    area = bh * bw / (h * w)
    aspect = bw / bh
    assert area.min() >= 0.05 - 1e-5 and area.max() <= 1.0 + 1e-5
    assert aspect.min() >= 0.75 - 1e-4 and aspect.max() <= 4 / 3 + 1e-4
    # P(one try out of bounds) is about 0.14 for a square image; 10 tries almost never all fail,
    # and the accepted areas spread over the whole range (a uniform draw has mean 0.525; the
    # rejected large boxes pull it lower)
    assert 0.40 < area.mean() < 0.53
    assert np.mean(area < 0.2) > 0.1 and np.mean(area > 0.8) > 0.05


def test_crop_flip_is_seeded_and_changes_the_batch():
    x = _images(b=8, h=32, w=32)
    a = np.asarray(da.crop_flip(x, keras.random.SeedGenerator(3)))
    b = np.asarray(da.crop_flip(x, keras.random.SeedGenerator(3)))
    c = np.asarray(da.crop_flip(x, keras.random.SeedGenerator(4)))
    np.testing.assert_array_equal(a, b)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert np.abs(a - c).max() > 1.0 and np.abs(a - x).max() > 1.0
    # values stay within the input's range (bilinear interpolation, edge pixels repeated)
    assert a.min() >= x.min() - 1e-3 and a.max() <= x.max() + 1e-3


def test_bad_ranges_name_the_argument():
    with pytest.raises(ValueError, match="area_range"):
        da.sample_boxes(2, 8, 8, keras.random.SeedGenerator(0), area_range=(0.0, 1.0))
    with pytest.raises(ValueError, match="aspect_range"):
        da.sample_boxes(2, 8, 8, keras.random.SeedGenerator(0), aspect_range=(2.0, 1.0))
    with pytest.raises(ValueError, match="attempts"):
        da.sample_boxes(2, 8, 8, keras.random.SeedGenerator(0), attempts=0)


def test_ranges_equal_the_tf_data_preprocessing():
    from data import preprocessing
    assert tuple(da.AREA_RANGE) == tuple(preprocessing.AREA_RANGE)
    assert tuple(da.ASPECT_RATIO_RANGE) == tuple(preprocessing.ASPECT_RATIO_RANGE)
