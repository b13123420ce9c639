"""Image sources (digits, tfds) and step-indexed batching (jaxssl.data.{batching,digits,sources,tfds_images}).

References: plain combinatorics for the batching invariants; sklearn's ``load_digits`` for the
digits pixels; torchvision's documented ``RandomResizedCrop`` fallback and SimCLR's
``center_crop`` formula for the host crops; tfds' own label files for ImageNet labels.
"""
import io
import math
import os
import subprocess
import sys
import tarfile
from collections import Counter

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds  # lazy: TensorFlow loads when a tfds test first uses it

from jaxssl.data import batching
from jaxssl.data.sources import UNLABELLED, default_splits, load_image_source


def data_cfg(**overrides) -> ml_collections.ConfigDict:
    """The ``config.data`` fields jaxssl.config.base_config defines."""
    from jaxssl.config import base_config
    cfg = base_config().data.to_dict()
    cfg.update(dict(name="digits", data_dir=None, image_size=16, pretrain_split=None,
                    train_split=None, test_split=None, crop_scale=(0.08, 1.0),
                    crop_ratio=(3 / 4, 4 / 3)))
    cfg.update(overrides)
    return ml_collections.ConfigDict(cfg)


# ----------------------------------------------------------------------------- batching

def test_epoch_permutation_is_a_deterministic_permutation():
    p = batching.epoch_permutation(3, 0, 97)
    np.testing.assert_array_equal(np.sort(p), np.arange(97))
    batching._cached_permutation.cache_clear()
    np.testing.assert_array_equal(batching.epoch_permutation(3, 0, 97), p)
    assert not np.array_equal(batching.epoch_permutation(3, 1, 97), p)  # epochs differ
    assert not np.array_equal(batching.epoch_permutation(4, 0, 97), p)  # seeds differ


def test_epoch_permutation_is_uniform():
    # All 4! = 24 orders of 4 items appear, each with frequency 1/24 (binomial 4-sigma band).
    trials = 2400
    counts = Counter(tuple(batching.epoch_permutation(11, e, 4)) for e in range(trials))
    assert len(counts) == 24
    mean, sd = trials / 24, math.sqrt(trials * (1 / 24) * (23 / 24))
    assert all(abs(c - mean) < 4 * sd for c in counts.values()), counts


def test_resumed_batches_equal_uninterrupted_run():
    n, b, seed = 103, 10, 5
    uninterrupted = [batching.batch_indices(seed, s, n, b) for s in range(35)]
    batching._cached_permutation.cache_clear()  # a fresh process resuming at step 17
    resumed = [batching.batch_indices(seed, s, n, b) for s in range(17, 35)]
    for s, batch in zip(range(17, 35), resumed):
        np.testing.assert_array_equal(batch, uninterrupted[s])


def test_epoch_batches_are_distinct_and_epochs_differ():
    n, b = 103, 10
    spe = batching.steps_per_epoch(n, b)
    assert spe == 10  # 3 examples of each epoch are dropped
    for epoch in range(3):
        batches = [batching.batch_indices(0, epoch * spe + i, n, b) for i in range(spe)]
        union = np.concatenate(batches)
        assert all(x.shape == (b,) and x.dtype == np.int64 for x in batches)
        assert len(np.unique(union)) == spe * b  # no index repeats within the epoch
        assert union.min() >= 0 and union.max() < n
    e0 = np.concatenate([batching.batch_indices(0, i, n, b) for i in range(spe)])
    e1 = np.concatenate([batching.batch_indices(0, spe + i, n, b) for i in range(spe)])
    assert not np.array_equal(e0, e1)


def test_batch_larger_than_dataset_names_the_field():
    with pytest.raises(ValueError, match=r"train\.batch_size=64 .* 50 training examples"):
        batching.steps_per_epoch(50, 64)


@pytest.mark.parametrize("process_count", [2, 4])
def test_process_rows_concatenate_to_the_global_batch(process_count):
    global_batch = batching.batch_indices(1, 7, 1000, 16)
    parts = [global_batch[batching.process_rows(16, p, process_count)] for p in range(process_count)]
    assert all(len(x) == 16 // process_count for x in parts)
    np.testing.assert_array_equal(np.concatenate(parts), global_batch)


def test_process_rows_agree_with_the_mesh_on_one_process():
    from jaxssl import sharding

    mesh = sharding.make_mesh(8)
    assert batching.process_rows(32, 0, 1) == sharding.process_batch_slice(32, mesh)
    with pytest.raises(ValueError, match=r"train\.batch_size=10 .* 4 processes"):
        batching.process_rows(10, 0, 4)


@pytest.mark.parametrize("num_shards", [1, 3, 8])
@pytest.mark.parametrize("n", [1, 17, 64, 101])
def test_eval_batches_cover_every_index_once(n, num_shards):
    batch_size = 16
    seen = Counter()
    batches = list(batching.eval_batches(n, batch_size, num_shards))
    assert len(batches) == -(-n // len(batches[0][0]))  # ceil(n / L) batches of one shape L
    for indices, mask in batches:
        assert len(indices) % num_shards == 0 and len(indices) >= batch_size
        assert len(indices) == len(batches[0][0])  # one shape: one compilation
        assert mask.dtype == bool
        seen.update(indices[mask].tolist())
        assert np.all(indices[~mask] == 0)  # padding repeats index 0, masked out
    assert seen == Counter(range(n))


# ----------------------------------------------------------------------------- digits

def test_digits_split_sizes_balance_and_pixels():
    from sklearn.datasets import load_digits

    ref = load_digits()
    train = load_image_source(data_cfg(), "train")
    test = load_image_source(data_cfg(), "test")
    assert (train.num_examples, test.num_examples) == (1257, 540)  # 1797 * 0.3 -> ceil = 540
    assert train.images.shape == (1257, 8, 8, 1) and train.images.dtype == np.uint8
    assert train.on_device and train.num_classes == 10 and train.image_shape == (8, 8, 1)

    # Rows map back to sklearn's examples: identify each by its pixels (duplicates are equal anyway).
    expected = np.rint(ref.images * 255 / 16).astype(np.uint8)[..., None]
    keys = {expected[i].tobytes(): i for i in range(len(expected))}
    train_ids = {keys[x.tobytes()] for x in train.images}
    test_ids = {keys[x.tobytes()] for x in test.images}
    assert not train_ids & test_ids
    for src in (train, test):
        for image, label in zip(src.images, src.labels):
            assert ref.target[keys[image.tobytes()]] == label
    assert train.images.max() == 255 and train.images.min() == 0

    # Stratified: each class's test share is floor or ceil of 30% of the class.
    class_counts = np.bincount(ref.target, minlength=10)
    test_counts = np.bincount(test.labels, minlength=10)
    assert np.all(test_counts >= np.floor(0.3 * class_counts))
    assert np.all(test_counts <= np.ceil(0.3 * class_counts))
    np.testing.assert_array_equal(test_counts + np.bincount(train.labels, minlength=10), class_counts)


def test_digits_split_is_disjoint_and_deterministic():
    from jaxssl.data.digits import load_digits_arrays, stratified_split

    _, labels = load_digits_arrays()
    tr, te = stratified_split(labels, 0.3, 0)
    assert np.intersect1d(tr, te).size == 0
    np.testing.assert_array_equal(np.union1d(tr, te), np.arange(len(labels)))
    tr2, te2 = stratified_split(labels.copy(), 0.3, 0)
    np.testing.assert_array_equal(te, te2)
    assert not np.array_equal(stratified_split(labels, 0.3, 1)[1], te)  # the seed matters


def test_digits_roles_and_errors():
    assert default_splits("digits") == {"pretrain": "train", "train": "train", "test": "test"}
    pre = load_image_source(data_cfg(), "pretrain")
    np.testing.assert_array_equal(pre.images, load_image_source(data_cfg(), "train").images)
    batch = pre.get(np.array([4, 0, 4]), seed=0, step=0)
    np.testing.assert_array_equal(batch["image"], pre.images[[4, 0, 4]])
    np.testing.assert_array_equal(batch["label"], pre.labels[[4, 0, 4]])
    with pytest.raises(ValueError, match=r"data\.test_split='validation' .*\['train', 'test'\]"):
        load_image_source(data_cfg(test_split="validation"), "test")
    with pytest.raises(IndexError, match=r"\[0, 1257\)"):
        pre.get(np.array([1257]), seed=0, step=0)


def test_unknown_dataset_names_field_value_and_choices():
    known = r"'digits', 'cifar10', 'cifar100', 'stl10', 'imagenet2012'"
    with pytest.raises(ValueError, match=r"data\.name='mnist' .*" + known):
        load_image_source(data_cfg(name="mnist"), "train")


def test_digits_and_imports_do_not_load_tensorflow():
    code = ("import sys; import jaxssl.data.sources, jaxssl.data.batching, jaxssl.data.tfds_images\n"
            "from jaxssl.data.sources import load_image_source\n"
            "from jaxssl.config import base_config\n"
            "data = base_config().data\n"
            "data.name = 'digits'\n"
            "load_image_source(data, 'train')\n"
            "bad = [m for m in ('tensorflow', 'tensorflow_datasets') if m in sys.modules]\n"
            "assert not bad, bad\n")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


# ----------------------------------------------------------------------------- host crops

def test_random_resized_crop_box_bounds_and_distribution():
    from jaxssl.data.tfds_images import random_resized_crop_box

    bitgen = np.random.PCG64(np.random.SeedSequence(0))
    height, width = 50, 80
    for _ in range(500):
        top, left, h, w = random_resized_crop_box(bitgen, height, width, (0.08, 1.0), (3 / 4, 4 / 3))
        assert 0 <= top and top + h <= height and 0 <= left and left + w <= width
        # w, h are sqrt(A r), sqrt(A / r) rounded: within 0.5 of a box with area >= 8% and
        # aspect r in [3/4, 4/3]
        assert (w + 0.5) * (h + 0.5) >= 0.08 * height * width
        assert (w - 0.5) / (h + 0.5) <= 4 / 3 and (w + 0.5) / (h - 0.5) >= 3 / 4

    # Square crops of a large image: area fraction ~ U(0.08, 1), placement uniform.
    fractions, offsets = [], []
    for _ in range(2000):
        top, left, h, w = random_resized_crop_box(bitgen, 1000, 1000, (0.08, 1.0), (1.0, 1.0))
        assert h == w
        fractions.append(h * w / 1e6)
        if h < 1000:
            offsets.append(top / (1000 - h))
    sd_mean = (1 - 0.08) / math.sqrt(12 * len(fractions))
    assert abs(np.mean(fractions) - 0.54) < 5 * sd_mean
    assert abs(np.mean(offsets) - 0.5) < 5 / math.sqrt(12 * len(offsets))


def test_random_resized_crop_fallback_is_torchvision_centre_crop():
    from jaxssl.data.tfds_images import random_resized_crop_box

    # No box of >= 90% area with aspect in [3/4, 4/3] fits a 1000x10 image: torchvision then
    # takes a centred crop of full width with the aspect clamped to 3/4: h = round(10 / 0.75).
    bitgen = np.random.PCG64(np.random.SeedSequence(0))
    assert random_resized_crop_box(bitgen, 1000, 10, (0.9, 1.0), (3 / 4, 4 / 3)) == ((1000 - 13) // 2, 0, 13, 10)
    assert random_resized_crop_box(bitgen, 10, 1000, (0.9, 1.0), (3 / 4, 4 / 3)) == (0, (1000 - 13) // 2, 10, 13)


# ----------------------------------------------------------------------------- tfds (mocked)

@pytest.mark.parametrize("name,num_classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_in_memory(name, num_classes):
    with tfds.testing.mock_data(num_examples=40):
        src = load_image_source(data_cfg(name=name), "train")
        test = load_image_source(data_cfg(name=name), "test")
    assert src.split == "train" and test.split == "test"
    assert src.images.shape == (40, 32, 32, 3) and src.images.dtype == np.uint8
    assert src.labels.shape == (40,) and src.labels.dtype == np.int32
    assert src.labels.min() >= 0 and src.labels.max() < num_classes
    assert src.on_device and src.num_classes == num_classes and src.image_shape == (32, 32, 3)
    batch = src.get(np.array([3, 39]), seed=0, step=0)
    np.testing.assert_array_equal(batch["image"], src.images[[3, 39]])
    np.testing.assert_array_equal(batch["label"], src.labels[[3, 39]])


def test_stl10_unlabelled_splits_have_no_labels():
    with tfds.testing.mock_data(num_examples=24):
        pre = load_image_source(data_cfg(name="stl10"), "pretrain")
        unl = load_image_source(data_cfg(name="stl10", pretrain_split="unlabelled"), "pretrain")
        train = load_image_source(data_cfg(name="stl10"), "train")
    assert pre.split == "train+unlabelled" and unl.split == "unlabelled"
    for src in (pre, unl):
        assert src.labels is None and src.images.shape == (24, 96, 96, 3)
        np.testing.assert_array_equal(src.get(np.arange(5), seed=0, step=0)["label"], np.full(5, UNLABELLED))
    assert train.labels is not None and train.labels.max() < 10
    with pytest.raises(ValueError, match=r"data\.pretrain_split='unlabeled' .*\['unlabeled'\]"):
        load_image_source(data_cfg(name="stl10", pretrain_split="unlabeled"), "pretrain")


def test_imagenet_host_crops_are_a_function_of_seed_step_and_row():
    cfg = data_cfg(name="imagenet2012", image_size=12)
    with tfds.testing.mock_data(num_examples=10):
        src = load_image_source(cfg, "pretrain")
        val = load_image_source(cfg, "test")
        assert not src.on_device and src.images is None and src.image_shape is None
        assert src.num_examples == 10 and src.num_classes == 1000 and val.split == "validation"
        idx = np.array([2, 7, 2, 5])
        a = src.get(idx, seed=0, step=3)
        assert a["image"].shape == (4, 2, 12, 12, 3) and a["image"].dtype == np.uint8
        assert src.output_shape == (2, 12, 12, 3)
        assert a["label"].dtype == np.int32 and a["label"].shape == (4,)
        np.testing.assert_array_equal(src.get(idx, seed=0, step=3)["image"], a["image"])
        assert not np.array_equal(src.get(idx, seed=0, step=4)["image"], a["image"])
        assert not np.array_equal(src.get(idx, seed=1, step=3)["image"], a["image"])
        assert not np.array_equal(a["image"][:, 0], a["image"][:, 1])  # two different views
        assert not np.array_equal(a["image"][0], a["image"][2])  # keyed by row, not by index
        # A process loading rows 1.. of the batch gets exactly those rows of the whole batch.
        part = src.get(idx[1:], seed=0, step=3, row_offset=1)
        np.testing.assert_array_equal(part["image"], a["image"][1:])
        np.testing.assert_array_equal(part["label"], a["label"][1:])
        c = val.get(idx, seed=0, step=0)
        assert c["image"].shape == (4, 12, 12, 3)
        np.testing.assert_array_equal(val.get(idx, seed=5, step=9)["image"], c["image"])  # no randomness


# ----------------------------------------------------------------------------- missing data

def test_missing_cifar_says_how_to_prepare(tmp_path):
    from jaxssl.data.tfds_images import DatasetNotPreparedError

    with pytest.raises(DatasetNotPreparedError) as err:
        load_image_source(data_cfg(name="cifar10", data_dir=str(tmp_path)), "train")
    msg = str(err.value)
    assert str(tmp_path) in msg
    assert f"python scripts/prepare_data.py cifar10 --data_dir {tmp_path}" in msg
    assert "tfds.builder('cifar10'" in msg and "download_and_prepare()" in msg


def test_missing_imagenet_names_manual_files_and_folder(tmp_path):
    from jaxssl.data.tfds_images import DatasetNotPreparedError

    with pytest.raises(DatasetNotPreparedError) as err:
        load_image_source(data_cfg(name="imagenet2012", data_dir=str(tmp_path)), "pretrain")
    msg = str(err.value)
    assert "ILSVRC2012_img_train.tar" in msg and "ILSVRC2012_img_val.tar" in msg
    assert os.path.join(str(tmp_path), "downloads", "manual") in msg
    assert f"python scripts/prepare_data.py imagenet2012 --data_dir {tmp_path}" in msg
    assert "file_format='array_record'" in msg


# ----------------------------------------------------------------------------- real ArrayRecord files

_SYNSETS = ("n01440764", "n01443537")  # the first two ImageNet classes (labels 0 and 1)


def _jpeg(height: int, width: int, seed: int) -> bytes:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG")
    return out.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _fake_imagenet_manual_dir(root) -> dict[str, bytes]:
    """ILSVRC2012_img_{train,val}.tar laid out like the real ones: 3 train images of each of
    two classes (a tar of per-class tars) and 4 validation images. Returns the val JPEGs."""
    manual = root / "downloads" / "manual"
    manual.mkdir(parents=True)
    with tarfile.open(manual / "ILSVRC2012_img_train.tar", "w") as train:
        for c, synset in enumerate(_SYNSETS):
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w") as per_class:
                for k in range(3):
                    _add(per_class, f"{synset}_{k}.JPEG", _jpeg(40 + 7 * k, 60 - 5 * k, 10 * c + k))
            _add(train, f"{synset}.tar", inner.getvalue())
    val_images = {f"ILSVRC2012_val_{k:08d}.JPEG": _jpeg(50, 30 + 9 * k, 100 + k) for k in range(1, 5)}
    with tarfile.open(manual / "ILSVRC2012_img_val.tar", "w") as val:
        for name, data in val_images.items():
            _add(val, name, data)
    return val_images


@pytest.fixture(scope="module")
def prepared_imagenet(tmp_path_factory):
    """A tiny imagenet2012 prepared by tfds' own builder in ArrayRecord format."""
    pytest.importorskip("importlib_resources", reason="tfds download_and_prepare imports it")
    root = tmp_path_factory.mktemp("imagenet_array_record")
    val_images = _fake_imagenet_manual_dir(root)
    tfds.builder("imagenet2012", data_dir=str(root), file_format="array_record").download_and_prepare()
    return root, val_images


def _simclr_center_crop_reference(jpeg: bytes, size: int, proportion: float) -> np.ndarray:
    """SimCLR data_util.center_crop for a square target (its _compute_crop_shape), PIL bicubic."""
    from PIL import Image

    image = Image.open(io.BytesIO(jpeg)).convert("RGB")
    width, height = image.size
    if 1.0 > width / height:  # requested aspect ratio (1) wider than the image
        crop_h = crop_w = int(np.rint(proportion * width))
    else:
        crop_h = crop_w = int(np.rint(proportion * height))
    top, left = (height - crop_h + 1) // 2, (width - crop_w + 1) // 2
    out = image.resize((size, size), Image.Resampling.BICUBIC, box=(left, top, left + crop_w, top + crop_h))
    return np.asarray(out)


def test_imagenet_real_array_record_source(prepared_imagenet):
    root, val_images = prepared_imagenet
    cfg = data_cfg(name="imagenet2012", data_dir=str(root), image_size=20)
    train = load_image_source(cfg, "pretrain")
    assert train.num_examples == 6
    batch = train.get(np.arange(6), seed=0, step=0)
    assert batch["image"].shape == (6, 2, 20, 20, 3)
    assert Counter(batch["label"].tolist()) == {0: 3, 1: 3}
    np.testing.assert_array_equal(train.get(np.arange(6), seed=0, step=0)["image"], batch["image"])

    # Validation: labels from tfds' own files; centre crops equal SimCLR's formula.
    names = tfds.core.tfds_path("datasets/imagenet2012/labels.txt").read_text().split()
    val_synsets = tfds.core.tfds_path("datasets/imagenet2012/validation_labels.txt").read_text().split()
    label_of = {f"ILSVRC2012_val_{k:08d}.JPEG": names.index(val_synsets[k - 1]) for k in range(1, 5)}
    jpeg_of_label = {label_of[name]: data for name, data in val_images.items()}
    assert len(jpeg_of_label) == 4  # the four labels are distinct
    val = load_image_source(cfg, "test")
    out = val.get(np.arange(4), seed=0, step=0)
    assert sorted(out["label"].tolist()) == sorted(jpeg_of_label)
    for image, label in zip(out["image"], out["label"]):
        np.testing.assert_array_equal(image, _simclr_center_crop_reference(jpeg_of_label[int(label)], 20, 0.875))


def test_imagenet_in_tfrecord_format_says_how_to_convert(tmp_path):
    pytest.importorskip("importlib_resources", reason="tfds download_and_prepare imports it")
    from jaxssl.data.tfds_images import DatasetNotPreparedError

    _fake_imagenet_manual_dir(tmp_path)
    tfds.builder("imagenet2012", data_dir=str(tmp_path)).download_and_prepare()  # tfrecord default
    with pytest.raises(DatasetNotPreparedError, match=r"tfds convert_format .*--out_file_format=array_record"):
        load_image_source(data_cfg(name="imagenet2012", data_dir=str(tmp_path)), "test")
