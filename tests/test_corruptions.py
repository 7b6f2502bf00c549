"""ImageNet-C corruptions (data.corruptions), the make_corruptions CLI, ImageNet-P sequences."""
import hashlib
import io
import json
import zipfile

import numpy as np
import pytest

from conftest import require_data
from data import corruptions as C
from data import make_corruptions
from data import perturbations as P


def _synthetic(h=40, w=48, seed=0):
    """A smooth, textured RGB test image (gradients + a few shapes), not pure noise."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([255 * xx / (w - 1), 255 * yy / (h - 1),
                    127 + 100 * np.sin(xx / 3.0) * np.cos(yy / 4.0)], axis=-1)
    img[h // 4:h // 2, w // 4:w // 2] = (200, 30, 60)
    rng = np.random.default_rng(seed)
    img = img + rng.normal(0, 4, img.shape)
    return np.uint8(np.clip(img, 0, 255))


@pytest.fixture(scope="module")
def real_crops():
    """64x64 center crops of 3 real ImageNet photos (shared data); skips if absent."""
    from PIL import Image
    path = require_data("imagenet-sample-images/images.zip")
    with zipfile.ZipFile(path) as z:
        names = sorted(n for n in z.namelist() if n.lower().endswith(".jpeg"))[:3]
        crops = []
        for n in names:
            img = np.asarray(Image.open(io.BytesIO(z.read(n))).convert("RGB"))
            h, w = img.shape[:2]
            crops.append(np.ascontiguousarray(img[h // 2 - 32:h // 2 + 32, w // 2 - 32:w // 2 + 32]))
    return crops


# ------------------------------------------------------------------------------ names
def test_lists():
    assert len(C.CORRUPTIONS_15) == 15 and len(C.CORRUPTIONS_19) == 19
    assert C.CORRUPTIONS_19[15:] == ("speckle_noise", "gaussian_blur", "spatter", "saturate")
    from imagecorruptions import get_corruption_names
    assert list(C.CORRUPTIONS_15) == get_corruption_names("common")
    assert list(C.CORRUPTIONS_19) == get_corruption_names("all")
    assert sum(len(v) for v in C.CORRUPTION_CATEGORIES.values()) == 19


@pytest.mark.parametrize("bad", ["gaussian", "Fog", "", None, "style"])
def test_unknown_corruption_raises(bad):
    with pytest.raises(ValueError, match="unknown corruption"):
        C.corrupt(_synthetic(), bad, 1)


@pytest.mark.parametrize("bad", [0, 6, -1, 2.5, "x", True])
def test_bad_severity_raises(bad):
    with pytest.raises(ValueError, match="severity"):
        C.corrupt(_synthetic(), "fog", bad)


def test_bad_images_raise():
    with pytest.raises(ValueError, match="uint8"):
        C.corrupt(np.zeros((40, 40, 3), np.float32), "fog", 1)
    with pytest.raises(ValueError, match="at least 32"):
        C.corrupt(np.zeros((31, 40, 3), np.uint8), "fog", 1)
    with pytest.raises(ValueError, match="shape"):
        C.corrupt(np.zeros((40, 40, 4), np.uint8), "fog", 1)


# ------------------------------------------------------------------------------ behaviour
@pytest.mark.parametrize("name", [c for c in C.CORRUPTIONS_19 if c != "glass_blur"])
def test_every_corruption_shape_dtype_reproducible(name):
    img = _synthetic()
    state = np.random.get_state()
    a = C.corrupt(img, name, 3, seed=7, index=1)
    b = C.corrupt(img, name, 3, seed=7, index=1)
    after = np.random.get_state()
    assert a.shape == img.shape and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, img), f"{name} left the image unchanged"
    # the caller's global NumPy stream is untouched
    assert state[0] == after[0] and np.array_equal(state[1], after[1]) and state[2] == after[2]


def test_glass_blur_small():
    img = _synthetic(32, 32)
    a = C.corrupt(img, "glass_blur", 2, seed=0, index=0)
    b = C.corrupt(img, "glass_blur", 2, seed=0, index=0)
    c = C.corrupt(img, "glass_blur", 2, seed=1, index=0)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("name", ["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise",
                                  "motion_blur", "snow", "frost", "fog", "spatter",
                                  "elastic_transform"])
def test_random_corruptions_depend_on_seed_and_index(name):
    img = _synthetic()
    base = C.corrupt(img, name, 4, seed=0, index=0)
    assert not np.array_equal(base, C.corrupt(img, name, 4, seed=1, index=0))
    assert not np.array_equal(base, C.corrupt(img, name, 4, seed=0, index=1))


def test_severity_increases_damage():
    img = _synthetic(48, 48)
    for name in ("gaussian_noise", "defocus_blur", "contrast", "pixelate", "jpeg_compression"):
        d = [np.abs(C.corrupt(img, name, s, seed=3).astype(float) - img).mean() for s in (1, 3, 5)]
        assert d[0] < d[1] < d[2], (name, d)


def test_hand_formulas():
    img = _synthetic()
    x = img / 255.0
    # contrast, severity 2: c = 0.3 around the per-channel mean
    means = x.mean(axis=(0, 1), keepdims=True)
    expected = np.uint8(np.clip((x - means) * 0.3 + means, 0, 1) * 255)
    np.testing.assert_array_equal(C.corrupt(img, "contrast", 2), expected)
    # gaussian noise, severity 5: sigma 0.38 (before clipping) -> residual std close to it
    flat = np.full((64, 64, 3), 128, np.uint8)
    noisy = C.corrupt(flat, "gaussian_noise", 5, seed=0) / 255.0 - 128 / 255.0
    assert 0.3 < noisy.std() < 0.4
    # impulse noise, severity 1: amount 0.03 of the values become 0 or 1
    changed = C.corrupt(flat, "impulse_noise", 1, seed=0) != 128
    assert 0.02 < changed.mean() < 0.04


def test_matches_imagecorruptions_on_real_images(real_crops):
    """Same bytes as the reference package called with the same seeding."""
    import imagecorruptions
    for i, img in enumerate(real_crops):
        for name, severity in [("brightness", 3), ("contrast", 5), ("defocus_blur", 2),
                               ("zoom_blur", 1), ("pixelate", 4), ("jpeg_compression", 5),
                               ("gaussian_blur", 3), ("saturate", 5)]:
            ours = C.corrupt(img, name, severity, seed=11, index=i)
            ref = imagecorruptions.corrupt(img, severity=severity, corruption_name=name)
            np.testing.assert_array_equal(ours, ref, err_msg=f"{name} {severity}")
        for name, severity in [("gaussian_noise", 2), ("frost", 4), ("fog", 5), ("snow", 3),
                               ("impulse_noise", 3)]:
            cell = C.derive_seed(11, i, name, severity)
            state = np.random.get_state()
            np.random.seed(cell)
            kwargs = {"seed": cell} if name == "impulse_noise" else {}
            ref = imagecorruptions.corrupt(img, severity=severity, corruption_name=name, **kwargs)
            np.random.set_state(state)
            np.testing.assert_array_equal(C.corrupt(img, name, severity, seed=11, index=i), ref,
                                          err_msg=f"{name} {severity}")


def test_grayscale_input_becomes_rgb():
    gray = _synthetic()[..., 0]
    out = C.corrupt(gray, "fog", 2, seed=0)
    assert out.shape == gray.shape + (3,)
    out1 = C.corrupt(gray[..., None], "fog", 2, seed=0)
    np.testing.assert_array_equal(out, out1)


def test_frost_textures_match_imagenet_c():
    """The packaged textures are the ImageNet-C ones (shared/data/imagenet-c-frost)."""
    folder = require_data("imagenet-c-frost")
    packaged = C.frost_texture_paths()
    assert len(packaged) == 6
    for p in packaged:
        ours = hashlib.sha256(p.read_bytes()).hexdigest()
        theirs = hashlib.sha256((folder / p.name).read_bytes()).hexdigest()
        assert ours == theirs, p.name


def test_corrupt_batch_and_indices():
    imgs = np.stack([_synthetic(seed=s) for s in range(3)])
    out = C.corrupt_batch(imgs, "shot_noise", 2, seed=5)
    for i in range(3):
        np.testing.assert_array_equal(out[i], C.corrupt(imgs[i], "shot_noise", 2, seed=5, index=i))
    with pytest.raises(ValueError, match="indices"):
        C.corrupt_batch(imgs, "shot_noise", 2, indices=[0, 1])


def test_tf_numpy_function_wrapper():
    tf = pytest.importorskip("tensorflow")
    imgs = np.stack([_synthetic(seed=s) for s in range(2)])
    ds = tf.data.Dataset.from_tensor_slices(imgs).enumerate().map(
        lambda i, x: C.tf_corrupt(x, "speckle_noise", 3, seed=2, index=i))
    out = [t.numpy() for t in ds]
    assert ds.element_spec.shape.as_list() == [40, 48, 3]
    for i in range(2):
        np.testing.assert_array_equal(out[i], C.corrupt(imgs[i], "speckle_noise", 3, seed=2, index=i))
    with pytest.raises(ValueError, match="unknown corruption"):
        C.tf_corrupt(imgs[0], "nope", 1)


# ------------------------------------------------------------------------------ CLI
def _make_input(tmp_path):
    from PIL import Image
    root = tmp_path / "in"
    for split, cls, k in [("val", "cat", 0), ("val", "cat", 1), ("val", "dog", 2), ("train", "dog", 3)]:
        d = root / split / cls
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_synthetic(50, 60, seed=k)).save(d / f"img{k}.JPEG", quality=95)
    (root / "classes.csv").write_text("folder,index,name\ncat,0,cat\ndog,1,dog\n")
    return root


def test_make_corruptions_dir_layout_and_reproducible(tmp_path):
    src = _make_input(tmp_path)
    args = ["--input", str(src), "--corruptions", "fog,contrast", "--severities", "1", "5",
            "--seed", "3", "--splits", "val", "--image_format", "png", "--no_progress"]
    summary = make_corruptions.run(args + ["--output", str(tmp_path / "a")])
    assert summary == {"images": 3, "written": 12, "output": str(tmp_path / "a")}
    make_corruptions.run(args + ["--output", str(tmp_path / "b")])
    for c in ("fog", "contrast"):
        for s in ("1", "5"):
            cell = tmp_path / "a" / c / s
            files = sorted(p.relative_to(cell).as_posix() for p in cell.rglob("*") if p.is_file())
            assert files == ["classes.csv", "val/cat/img0.png", "val/cat/img1.png", "val/dog/img2.png"]
            for f in files:
                assert (cell / f).read_bytes() == (tmp_path / "b" / c / s / f).read_bytes()
    # the written image is corrupt() of the decoded input, keyed by crc32 of the member path
    from PIL import Image
    img = np.asarray(Image.open(src / "val/cat/img1.JPEG").convert("RGB"))
    expected = C.corrupt(img, "fog", 5, seed=3, index=make_corruptions.member_key("val/cat/img1.JPEG"))
    got = np.asarray(Image.open(tmp_path / "a/fog/5/val/cat/img1.png"))
    np.testing.assert_array_equal(got, expected)
    meta = json.loads((tmp_path / "a" / "corruptions.json").read_text())
    assert meta["seed"] == 3 and meta["corruptions"] == ["fog", "contrast"]
    # resuming writes nothing new
    again = make_corruptions.run(args + ["--output", str(tmp_path / "a")])
    assert again["written"] == 0


def test_make_corruptions_zip_and_image_size(tmp_path):
    src = _make_input(tmp_path)
    zpath = tmp_path / "in.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for p in sorted(src.rglob("*.JPEG")):
            z.write(p, p.relative_to(src).as_posix())
    out = tmp_path / "out"
    make_corruptions.run(["--input", str(zpath), "--output", str(out), "--corruptions", "pixelate",
                          "--severities", "2", "--seed", "0", "--format", "zip", "--image_size", "32",
                          "--no_progress"])
    from PIL import Image
    for split, n in (("val", 3), ("train", 1)):
        with zipfile.ZipFile(out / "pixelate" / "2" / f"{split}.zip") as z:
            names = z.namelist()
            assert len(names) == n and all(m.startswith(f"{split}/") and m.endswith(".jpg") for m in names)
            assert Image.open(io.BytesIO(z.read(names[0]))).size == (32, 32)
    assert not list(out.rglob(".*.tmp"))


def test_make_corruptions_zipdir_input(tmp_path):
    """A directory of <split>.zip files (the shared-data layout), members with or without split."""
    src = _make_input(tmp_path)
    zdir = tmp_path / "zipdir"
    zdir.mkdir()
    with zipfile.ZipFile(zdir / "val.zip", "w") as z:          # <class>/<file>
        for p in sorted((src / "val").rglob("*.JPEG")):
            z.write(p, p.relative_to(src / "val").as_posix())
    with zipfile.ZipFile(zdir / "train.zip", "w") as z:        # <split>/<class>/<file>
        for p in sorted((src / "train").rglob("*.JPEG")):
            z.write(p, p.relative_to(src).as_posix())
    (zdir / "classes.csv").write_text((src / "classes.csv").read_text())
    common = ["--corruptions", "shot_noise", "--severities", "2", "--seed", "4", "--no_progress",
              "--image_format", "png"]
    make_corruptions.run(["--input", str(zdir), "--output", str(tmp_path / "z")] + common)
    make_corruptions.run(["--input", str(src), "--output", str(tmp_path / "d")] + common)
    cell_z, cell_d = tmp_path / "z/shot_noise/2", tmp_path / "d/shot_noise/2"
    files = sorted(p.relative_to(cell_z).as_posix() for p in cell_z.rglob("*.png"))
    assert files == ["train/dog/img3.png", "val/cat/img0.png", "val/cat/img1.png", "val/dog/img2.png"]
    for f in files:  # same member path -> same seed -> same bytes, whatever the container
        assert (cell_z / f).read_bytes() == (cell_d / f).read_bytes()
    assert (cell_z / "classes.csv").is_file()


def test_make_corruptions_bad_args(tmp_path):
    src = _make_input(tmp_path)
    base = ["--input", str(src), "--output", str(tmp_path / "o"), "--seed", "0"]
    with pytest.raises(SystemExit):
        make_corruptions.parse_args(base + ["--corruptions", "blizzard"])
    with pytest.raises(SystemExit):
        make_corruptions.parse_args(base + ["--severities", "0"])
    with pytest.raises(ValueError, match="splits"):
        make_corruptions.run(base + ["--splits", "test", "--no_progress"])
    assert make_corruptions.parse_args(base + ["--corruptions", "all19"]).corruptions == list(C.CORRUPTIONS_19)


def test_output_reads_back_through_build_dataset(tmp_path):
    """OUTPUT/<corruption>/<severity> is an image-folder source for data.build_dataset."""
    sources = pytest.importorskip("data.sources")
    src = _make_input(tmp_path)
    out = tmp_path / "o"
    make_corruptions.run(["--input", str(src), "--output", str(out), "--corruptions", "contrast",
                          "--severities", "3", "--seed", "0", "--splits", "val", "--no_progress"])
    info = sources.inspect_source(str(out / "contrast" / "3"))
    assert info.kind == "dir" and info.class_names == ("cat", "dog") and info.split_sizes == {"val": 3}


# ------------------------------------------------------------------------------ ImageNet-P
def test_perturbation_sequences():
    img = _synthetic(48, 56)
    for name in P.PERTURBATIONS:
        seq = P.perturbation_sequence(img, name, seed=1, index=2, crop_size=40)
        assert seq.shape == (P.NUM_FRAMES[name], 40, 40, 3) and seq.dtype == np.uint8, name
        np.testing.assert_array_equal(seq, P.perturbation_sequence(img, name, seed=1, index=2,
                                                                   crop_size=40))
    crop = img[4:44, 8:48]
    for name in ("gaussian_noise", "shot_noise", "zoom_blur"):
        seq = P.perturbation_sequence(img, name, crop_size=40)
        np.testing.assert_array_equal(seq[0], crop)  # the first frame is clean
    np.testing.assert_array_equal(P.perturbation_sequence(img, "translate", crop_size=40)[20], crop)
    np.testing.assert_array_equal(P.perturbation_sequence(img, "rotate", crop_size=40)[15], crop)
    np.testing.assert_array_equal(P.perturbation_sequence(img, "brightness", crop_size=40)[15],
                                  np.uint8(np.clip(__import__("skimage").color.hsv2rgb(
                                      __import__("skimage").color.rgb2hsv(crop / 255.0)), 0, 1) * 255))
    a = P.perturbation_sequence(img, "gaussian_noise", seed=0, difficulty=1)
    b = P.perturbation_sequence(img, "gaussian_noise", seed=0, difficulty=3)
    assert np.abs(a[1:].astype(float) - img).mean() < np.abs(b[1:].astype(float) - img).mean()
    with pytest.raises(ValueError, match="unknown perturbation"):
        P.perturbation_sequence(img, "shear")
    with pytest.raises(ValueError, match="difficulty"):
        P.perturbation_sequence(img, "rotate", difficulty=4)
    with pytest.raises(ValueError, match="crop_size"):
        P.perturbation_sequence(img, "rotate", crop_size=64)
