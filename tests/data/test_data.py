import gzip
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from tf_asap import data
import tf_asap.data.idx  # noqa: F401  (patched below)
import tf_asap.data.tfds_source  # noqa: F401
from tf_asap.errors import ConfigurationError
from tf_asap.errors import DataError

DEBIAN_FASHION = "/usr/share/datasets/fashion-mnist"
needs_debian_fashion = pytest.mark.skipif(
    not os.path.isfile(os.path.join(DEBIAN_FASHION, "train-images-idx3-ubyte.gz")),
    reason="needs `apt install dataset-fashion-mnist`",
)


def write_idx(path, array, compress=False):
    """Write `array` (uint8) as an IDX file, gzipped if `compress`."""
    array = np.asarray(array, np.uint8)
    header = bytes([0, 0, 0x08, array.ndim])
    header += np.asarray(array.shape, ">u4").tobytes()
    payload = header + array.tobytes()
    if compress:
        payload = gzip.compress(payload)
    with open(path, "wb") as file:
        file.write(payload)
    return path


def write_tiny_fashion(directory, count=8, seed=0, compress=True):
    """Four IDX files of a tiny random Fashion-MNIST in `directory`."""
    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    arrays = {}
    for prefix in ("train", "t10k"):
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, count, dtype=np.uint8)
        suffix = ".gz" if compress else ""
        write_idx(os.path.join(directory, f"{prefix}-images-idx3-ubyte{suffix}"),
                  images, compress)
        write_idx(os.path.join(directory, f"{prefix}-labels-idx1-ubyte{suffix}"),
                  labels, compress)
        arrays[prefix] = (images, labels)
    return arrays


@pytest.fixture
def no_data_sources(monkeypatch, tmp_path):
    """Hide Debian's files, Keras' cache, the env var and tensorflow-datasets."""
    monkeypatch.setattr(data.idx, "SYSTEM_DATA_DIRS", (str(tmp_path / "system"),))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(data.tfds_source, "import_tfds", lambda: None)
    return tmp_path


def images_of(dataset):
    return np.concatenate([images for images, _ in dataset.as_numpy_iterator()])


def labels_of(dataset):
    return np.concatenate([labels for _, labels in dataset.as_numpy_iterator()])


def is_shift_of(augmented, original, padding, allow_flip):
    """Whether `augmented` is `original` zero-padded, cropped (and flipped)."""
    height, width = original.shape[:2]
    padded = np.pad(original, ((padding, padding), (padding, padding), (0, 0)))
    candidates = [padded, padded[:, ::-1]] if allow_flip else [padded]
    for candidate in candidates:
        for row in range(2 * padding + 1):
            for column in range(2 * padding + 1):
                window = candidate[row:row + height, column:column + width]
                if np.allclose(window, augmented, atol=1e-6):
                    return True
    return False


# IDX reader


@needs_debian_fashion
def test_read_idx_reads_real_fashion_mnist_files():
    images = data.read_idx(os.path.join(DEBIAN_FASHION, "train-images-idx3-ubyte.gz"))
    labels = data.read_idx(os.path.join(DEBIAN_FASHION, "train-labels-idx1-ubyte.gz"))
    assert images.shape == (60000, 28, 28)
    assert images.dtype == np.uint8
    assert labels.shape == (60000,)
    assert sorted(np.unique(labels)) == list(range(10))
    assert np.bincount(labels).tolist() == [6000] * 10
    # The first training image is an ankle boot (class 9), then two T-shirts.
    assert labels[:3].tolist() == [9, 0, 0]
    test_labels = data.read_idx(
        os.path.join(DEBIAN_FASHION, "t10k-labels-idx1-ubyte.gz")
    )
    assert test_labels.shape == (10000,)
    assert test_labels[:3].tolist() == [9, 2, 1]


@needs_debian_fashion
def test_load_arrays_reads_fashion_mnist_from_debian_location(monkeypatch, tmp_path):
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(data.tfds_source, "import_tfds", lambda: None)
    images, labels = data.load_arrays("fashion_mnist", "train")
    assert images.shape == (60000, 28, 28, 1)
    assert images.dtype == np.float32
    assert labels.dtype == np.int32
    # Normalised with the training set's own mean and standard deviation.
    assert abs(float(images.mean())) < 1e-3
    assert abs(float(images.std()) - 1.0) < 1e-3


def test_read_idx_reads_raw_and_gzipped_files(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    raw = data.read_idx(write_idx(tmp_path / "raw-idx3-ubyte", array))
    zipped = data.read_idx(write_idx(tmp_path / "zip.gz", array, compress=True))
    np.testing.assert_array_equal(raw, array)
    np.testing.assert_array_equal(zipped, array)


def test_read_idx_reads_big_endian_int32(tmp_path):
    array = np.array([[1, -2], [70000, 3]], ">i4")
    path = tmp_path / "ints"
    path.write_bytes(bytes([0, 0, 0x0C, 2]) + np.array([2, 2], ">u4").tobytes()
                     + array.tobytes())
    np.testing.assert_array_equal(data.read_idx(path), array.astype(np.int32))


def test_read_idx_rejects_truncated_file(tmp_path):
    path = write_idx(tmp_path / "images", np.zeros((10, 28, 28), np.uint8))
    content = path.read_bytes()
    path.write_bytes(content[:-100])
    with pytest.raises(DataError, match="truncated or corrupt"):
        data.read_idx(path)


def test_read_idx_rejects_short_header(tmp_path):
    path = tmp_path / "short"
    path.write_bytes(bytes([0, 0, 0x08]))
    with pytest.raises(DataError, match="fewer than the 4-byte magic"):
        data.read_idx(path)


def test_read_idx_rejects_wrong_magic_number(tmp_path):
    path = tmp_path / "not-idx.txt"
    path.write_bytes(b"hello, this is not an IDX file")
    with pytest.raises(DataError, match="is not an IDX file"):
        data.read_idx(path)


def test_read_idx_rejects_corrupt_gzip(tmp_path):
    path = write_idx(tmp_path / "images.gz", np.zeros((4, 28, 28)), compress=True)
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])
    with pytest.raises(DataError, match="damaged or truncated"):
        data.read_idx(path)


def test_load_arrays_rejects_images_and_labels_of_different_lengths(
    no_data_sources,
):
    directory = no_data_sources / "mine"
    write_tiny_fashion(directory, count=8)
    write_idx(directory / "train-labels-idx1-ubyte.gz", np.zeros(5), compress=True)
    with pytest.raises(DataError, match="must belong to the same split"):
        data.load_arrays("fashion_mnist", "train", data_dir=directory)


# Where data sets are looked for


def test_env_var_directory_is_searched_before_debian(no_data_sources, monkeypatch):
    root = no_data_sources / "env"
    arrays = write_tiny_fashion(root / "fashion-mnist", count=8)
    write_tiny_fashion(no_data_sources / "system" / "fashion-mnist", count=3)
    monkeypatch.setenv(data.DATA_DIR_ENV, str(root))
    images, labels = data.load_arrays("fashion_mnist", "test", normalize=False)
    np.testing.assert_array_equal(images[..., 0], arrays["t10k"][0])
    np.testing.assert_array_equal(labels, arrays["t10k"][1])


def test_data_dir_argument_accepts_a_directory_holding_the_files(no_data_sources):
    arrays = write_tiny_fashion(no_data_sources / "flat", count=5, compress=False)
    images, labels = data.load_arrays(
        "Fashion-MNIST", "train", normalize=False, data_dir=no_data_sources / "flat"
    )
    assert images.shape == (5, 28, 28, 1)
    np.testing.assert_array_equal(labels, arrays["train"][1])


def test_system_location_is_used_without_env_var(no_data_sources):
    arrays = write_tiny_fashion(no_data_sources / "system" / "mnist", count=4)
    _, labels = data.load_arrays("mnist", "train", normalize=False)
    np.testing.assert_array_equal(labels, arrays["train"][1])


def test_missing_dataset_error_names_every_place_looked(no_data_sources):
    with pytest.raises(DataError) as caught:
        data.load_dataset("fashion_mnist", "train", data_dir=no_data_sources / "arg")
    message = str(caught.value)
    assert str(no_data_sources / "arg" / "fashion-mnist") in message
    assert "$TF_ASAP_DATA_DIR (not set)" in message
    assert str(no_data_sources / "system" / "fashion-mnist") in message
    assert str(no_data_sources / "keras_home" / "datasets" / "fashion-mnist") in message
    assert "tensorflow-datasets 'fashion_mnist' (not installed)" in message
    assert "apt install dataset-fashion-mnist" in message
    assert "pip install tensorflow-datasets" in message


def test_missing_dataset_error_reports_tfds_failure(no_data_sources, monkeypatch):
    class OfflineTfds:
        ReadConfig = staticmethod(lambda **kwargs: None)

        @staticmethod
        def load(*args, **kwargs):
            raise ConnectionError("no route to host")

    monkeypatch.setattr(data.tfds_source, "import_tfds", lambda: OfflineTfds)
    with pytest.raises(DataError, match="ConnectionError: no route to host"):
        data.load_arrays("cifar10", "test")


def test_unknown_dataset_name_lists_available_names():
    with pytest.raises(ConfigurationError, match="cifar10, cifar100, fashion_mnist"):
        data.load_dataset("svhn")


def test_unknown_split_is_a_configuration_error(no_data_sources):
    with pytest.raises(ConfigurationError, match="has no split 'validation'"):
        data.load_dataset("fashion_mnist", "validation")


def test_dataset_info_describes_fashion_mnist():
    info = data.dataset_info("fashion-mnist")
    assert info.input_shape == (28, 28, 1)
    assert info.num_classes == 10
    assert info.flip is False
    assert data.dataset_info("imagenette", image_size=128).input_shape == (128, 128, 3)
    with pytest.raises(ConfigurationError, match="only to ImageNet-style"):
        data.dataset_info("cifar10", image_size=64)


# Pipelines over IDX files


def test_load_dataset_batches_and_normalises(no_data_sources):
    arrays = write_tiny_fashion(no_data_sources / "d", count=10)
    dataset = data.load_dataset(
        "fashion_mnist", "train", batch_size=4, shuffle=False, augment=False,
        data_dir=no_data_sources / "d",
    )
    batches = list(dataset.as_numpy_iterator())
    assert [images.shape for images, _ in batches] == [
        (4, 28, 28, 1), (4, 28, 28, 1), (2, 28, 28, 1)
    ]
    images = np.concatenate([images for images, _ in batches])
    labels = np.concatenate([labels for _, labels in batches])
    assert images.dtype == np.float32 and labels.dtype == np.int32
    expected = (arrays["train"][0][..., None] / 255.0 - 0.2860) / 0.3530
    np.testing.assert_allclose(images, expected, atol=1e-5)
    np.testing.assert_array_equal(labels, arrays["train"][1])


def test_split_slices_and_limit_select_leading_examples(no_data_sources):
    arrays = write_tiny_fashion(no_data_sources / "d", count=10)
    kwargs = dict(normalize=False, data_dir=no_data_sources / "d")
    _, labels = data.load_arrays("fashion_mnist", "train[2:5]", **kwargs)
    np.testing.assert_array_equal(labels, arrays["train"][1][2:5])
    _, labels = data.load_arrays("fashion_mnist", "train[50%:]", **kwargs)
    np.testing.assert_array_equal(labels, arrays["train"][1][5:])
    dataset = data.load_dataset("fashion_mnist", "test", limit=3, **kwargs)
    np.testing.assert_array_equal(labels_of(dataset), arrays["t10k"][1][:3])


def test_training_split_is_shuffled_reproducibly_and_per_epoch(no_data_sources):
    arrays = write_tiny_fashion(no_data_sources / "d", count=64)
    kwargs = dict(batch_size=16, augment=False, data_dir=no_data_sources / "d")
    dataset = data.load_dataset("fashion_mnist", "train", seed=3, **kwargs)
    first_epoch, second_epoch = labels_of(dataset), labels_of(dataset)
    again = labels_of(data.load_dataset("fashion_mnist", "train", seed=3, **kwargs))
    np.testing.assert_array_equal(first_epoch, again)
    assert not np.array_equal(first_epoch, second_epoch)
    assert sorted(first_epoch) == sorted(arrays["train"][1])
    test_labels = labels_of(data.load_dataset("fashion_mnist", "test", **kwargs))
    np.testing.assert_array_equal(test_labels, arrays["t10k"][1])


def test_fashion_mnist_augmentation_is_a_shift_without_flip(no_data_sources):
    write_tiny_fashion(no_data_sources / "d", count=16)
    kwargs = dict(batch_size=8, shuffle=False, normalize=False,
                  data_dir=no_data_sources / "d")
    plain = images_of(data.load_dataset("fashion_mnist", augment=False, **kwargs))
    augmented = images_of(data.load_dataset("fashion_mnist", augment=True, **kwargs))
    assert augmented.shape == plain.shape
    assert not np.allclose(augmented, plain)
    for shifted, original in zip(augmented, plain):
        assert is_shift_of(shifted, original, padding=2, allow_flip=False)


def test_flip_can_be_turned_on_for_fashion_mnist(no_data_sources):
    write_tiny_fashion(no_data_sources / "d", count=32)
    kwargs = dict(batch_size=32, shuffle=False, normalize=False,
                  data_dir=no_data_sources / "d")
    plain = images_of(data.load_dataset("fashion_mnist", augment=False, **kwargs))
    flipped = images_of(
        data.load_dataset("fashion_mnist", augment=True, flip=True, **kwargs)
    )
    shifts_only = [
        is_shift_of(image, original, 2, allow_flip=False)
        for image, original in zip(flipped, plain)
    ]
    assert not all(shifts_only)
    for image, original in zip(flipped, plain):
        assert is_shift_of(image, original, 2, allow_flip=True)


def test_augmentation_changes_between_epochs(no_data_sources):
    write_tiny_fashion(no_data_sources / "d", count=8)
    dataset = data.load_dataset(
        "fashion_mnist", batch_size=8, shuffle=False, data_dir=no_data_sources / "d"
    )
    assert not np.allclose(images_of(dataset), images_of(dataset))


# tensorflow-datasets path, offline through mock data


@pytest.fixture
def mock_tfds(monkeypatch, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    with tfds.testing.mock_data(num_examples=20):
        yield tfds


def test_cifar10_pipeline_from_mock_tfds(mock_tfds):
    kwargs = dict(batch_size=8, shuffle=False)
    raw = images_of(data.load_dataset("cifar10", augment=False, normalize=False, **kwargs))
    normalised = data.load_dataset("cifar10", augment=False, **kwargs)
    augmented = images_of(data.load_dataset("cifar10", augment=True, normalize=False, **kwargs))
    first_images, first_labels = next(iter(normalised))
    assert first_images.shape == (8, 32, 32, 3)
    assert first_images.dtype == tf.float32
    assert first_labels.dtype == tf.int32
    assert raw.shape == augmented.shape == (20, 32, 32, 3)
    assert 0.0 <= raw.min() and raw.max() <= 1.0
    mean = np.array([0.4914, 0.4822, 0.4465], np.float32)
    std = np.array([0.2470, 0.2435, 0.2616], np.float32)
    np.testing.assert_allclose(images_of(normalised), (raw - mean) / std, atol=1e-5)
    assert not np.allclose(raw, augmented)
    for image, original in zip(augmented, raw):
        assert is_shift_of(image, original, padding=4, allow_flip=True)


def test_cifar100_labels_cover_a_hundred_classes(mock_tfds):
    info = data.dataset_info("cifar100")
    _, labels = data.load_arrays("cifar100", "train")
    assert info.num_classes == 100
    assert labels.dtype == np.int32
    assert 0 <= labels.min() and labels.max() < 100


def test_imagenet_style_pipeline_resizes_and_crops(mock_tfds):
    train = data.load_dataset("imagenette", "train", batch_size=4, image_size=64)
    images, labels = next(iter(train))
    assert images.shape == (4, 64, 64, 3)
    assert labels.dtype == tf.int32
    images, labels = data.load_arrays("imagenet2012", "test", limit=5)
    assert images.shape == (5, 224, 224, 3)
    with pytest.raises(ConfigurationError, match="needs a limit"):
        data.load_arrays("imagenet2012", "validation")


# The user's own data: image folders and .npz files


def write_image_folder(root, classes=3, per_class=4, size=(12, 10), channels=1, seed=0):
    """A folder with one sub-folder of PNGs per class; returns its path."""
    rng = np.random.default_rng(seed)
    for index in range(classes):
        folder = root / f"class_{index}"
        folder.mkdir(parents=True)
        for number in range(per_class):
            pixels = rng.integers(0, 256, (*size, channels), dtype=np.uint8)
            (folder / f"{number}.png").write_bytes(tf.io.encode_png(pixels).numpy())
    return root


def test_image_folder_reads_classes_in_alphabetical_order_and_resizes(tmp_path):
    root = write_image_folder(tmp_path / "pics", classes=3, per_class=4)
    loaded = data.load_image_folder(root, image_size=(8, 8))
    assert loaded.class_names == ["class_0", "class_1", "class_2"]
    assert loaded.images.shape == (12, 8, 8, 1) and loaded.images.dtype == np.uint8
    assert loaded.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda root: root.mkdir(), "holds no images in class sub-folders"),
        (lambda root: write_image_folder(root, classes=1), "holds one class only ('class_0')"),
    ],
)
def test_image_folder_errors_name_the_path_and_the_fix(tmp_path, make, message):
    root = tmp_path / "pics"
    make(root)
    with pytest.raises(DataError, match=re.escape(message)) as raised:
        data.load_image_folder(root)
    assert str(root) in str(raised.value)


def test_image_folder_with_mixed_channel_counts_is_refused(tmp_path):
    root = write_image_folder(tmp_path / "pics", classes=2, channels=1)
    rgb = np.zeros((12, 10, 3), np.uint8)
    (root / "class_1" / "colour.png").write_bytes(tf.io.encode_png(rgb).numpy())
    with pytest.raises(DataError, match="different channel counts") as raised:
        data.load_image_folder(root)
    assert "colour.png' has 3" in str(raised.value)
    assert "Image.convert('RGB')" in str(raised.value)


def test_fit_images_to_model_converts_channels_and_checks_labels(tmp_path):
    root = write_image_folder(tmp_path / "pics", classes=3, channels=1)
    loaded = data.load_image_folder(root)
    fitted, notes = data.fit_images_to_model(loaded, (6, 6, 3), num_classes=3)
    assert fitted.images.shape == (12, 6, 6, 3)
    np.testing.assert_array_equal(fitted.images[..., 0], fitted.images[..., 2])
    assert notes == ["converted 1-channel images to 3 channel(s)", "resized 12x10 images to 6x6"]
    with pytest.raises(DataError, match=r"label 2 is outside the model's 2 classes \(0..1\) \(3 class folders\)"):
        data.fit_images_to_model(loaded, (12, 10, 1), num_classes=2)


def test_npz_splits_are_read_and_a_missing_key_is_named(tmp_path):
    path = tmp_path / "arrays.npz"
    x = np.zeros((5, 4, 4), np.uint8)
    np.savez(path, x_train=x, y_train=np.arange(5), x_test=x[:2], y_test=np.arange(2))
    splits = data.load_npz(path)
    assert sorted(splits) == ["test", "train"]
    assert splits["train"].images.shape == (5, 4, 4, 1)  # (N, H, W) gains its channel axis
    np.savez(path, x_train=x, y_train=np.arange(5), x_val=x)
    with pytest.raises(DataError, match=r"has no array 'y_val' \(it has x_train, x_val, y_train\)"):
        data.load_npz(path)


def test_holdout_is_seeded_disjoint_and_complete():
    train, validation = data.holdout(100, 0.1, seed=3)
    assert len(validation) == 10 and len(train) == 90
    assert set(train).isdisjoint(validation) and set(train) | set(validation) == set(range(100))
    np.testing.assert_array_equal(data.holdout(100, 0.1, seed=3)[1], validation)
    assert not np.array_equal(data.holdout(100, 0.1, seed=4)[1], validation)


def test_load_dataset_validation_subset_is_held_out_from_training(no_data_sources):
    write_tiny_fashion(no_data_sources / "d", count=40)
    common = dict(batch_size=64, shuffle=False, augment=False, normalize=False,
                  data_dir=no_data_sources / "d", validation_split=0.25, seed=1)
    training = images_of(data.load_dataset("fashion_mnist", subset="training", **common))
    validation = images_of(data.load_dataset("fashion_mnist", subset="validation", **common))
    assert len(training) == 30 and len(validation) == 10
    everything = images_of(data.load_dataset(
        "fashion_mnist", batch_size=64, shuffle=False, augment=False, normalize=False,
        data_dir=no_data_sources / "d",
    ))
    def rows(images):
        return sorted(bytes(row) for row in np.round(images * 255).astype(np.uint8).reshape(len(images), -1))

    assert rows(np.concatenate([training, validation])) == rows(everything)
    with pytest.raises(ConfigurationError, match="go together"):
        data.load_dataset("fashion_mnist", validation_split=0.1, data_dir=no_data_sources / "d")
