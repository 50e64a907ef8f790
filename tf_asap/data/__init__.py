"""Data sets with the paper's preprocessing, read offline first; and the user's own data.

`load_dataset` returns batched `tf.data` pipelines of `(image, label)` with
the preprocessing of the paper (appendix A.1): per-channel normalisation
with the training set's mean and standard deviation, and, for training, a
random crop from a zero-padded image plus a random horizontal flip.

Where the data comes from, in order:

* Fashion-MNIST and MNIST are read directly from their IDX files (gzipped
  or raw), from the `data_dir` argument, then `$TF_ASAP_DATA_DIR`, then the
  Debian/Ubuntu package location (`apt install dataset-fashion-mnist` puts
  the files in `/usr/share/datasets/fashion-mnist/`), then Keras' download
  cache (`~/.keras/datasets/fashion-mnist/`, filled by
  `keras.datasets.fashion_mnist.load_data()`), and only then through
  `tensorflow-datasets`, which downloads where there is internet. In a
  directory, the data set's own subdirectory (`fashion-mnist/`,
  `fashion_mnist/` or `mnist/`) is searched before the directory itself.
* CIFAR-10, CIFAR-100, Imagenette and ImageNet (ILSVRC 2012) go through
  `tensorflow-datasets` (an optional dependency, imported only when needed).

A data set that cannot be found raises `DataError` listing every place
looked and how to get the data.

Augmentation choices (the paper only says "random crop and random
horizontal flip" for its CIFAR and ImageNet images):

* CIFAR: 4-pixel zero padding, random 32x32 crop, horizontal flip.
* 28x28 sets (MNIST and Fashion-MNIST): 2-pixel zero padding and a random
  28x28 crop, no flip. A flipped digit is not the same digit; a flipped
  shirt is still a shirt, but Fashion-MNIST keeps the flip off by default
  so that the two 28x28 sets behave alike ("none of the flip for
  digits-like data"). Pass `flip=True` to turn it on.
* ImageNet-style: shorter side resized to 256/224 of the crop size, a
  random crop (training) or the centre crop (evaluation), horizontal flip
  for training.

Padding is zero in pixel space, before normalisation, as PyTorch's
`RandomCrop(padding=...)` followed by `Normalize` does.

Data a user already holds (NumPy arrays, `(x, y)` tuples, `tf.data`
datasets batched or not, generators, `keras.utils.PyDataset`) needs no
loader: every tf_asap entry point takes it as it is, through the core's
`tf_asap.inputs.as_batches`.
Data a user keeps on disk (a folder of images with one sub-folder per class,
an `.npz` file of arrays, any tensorflow-datasets name) is read by
`load_image_folder`, `load_npz` and `load_tfds_arrays`, and fitted to a
model's input by `fit_images_to_model` (resizing, channels, pixel scaling).

The package, one job per module: `catalogue` (the named data sets), `idx`
(IDX files), `tfds_source` (tensorflow-datasets and split names),
`pipelines` (`tf.data` preprocessing and augmentation), `loading`
(`load_dataset`, `load_arrays`), `user_data` (folders, `.npz`, any tfds name,
held-out splits).
"""

from tf_asap.data.catalogue import DATA_DIR_ENV, DatasetInfo, available_datasets, dataset_info
from tf_asap.data.idx import SYSTEM_DATA_DIRS, read_idx
from tf_asap.data.loading import load_arrays, load_dataset
from tf_asap.data.user_data import (
    LabelledImages,
    batches,
    fit_images_to_model,
    has_input_scaling,
    holdout,
    load_image_folder,
    load_npz,
    load_tfds_arrays,
    pixel_scaling,
)
from tf_asap.inputs import DEFAULT_BATCH_SIZE

__all__ = [
    "DATA_DIR_ENV",
    "DEFAULT_BATCH_SIZE",
    "DatasetInfo",
    "LabelledImages",
    "SYSTEM_DATA_DIRS",
    "available_datasets",
    "batches",
    "dataset_info",
    "fit_images_to_model",
    "has_input_scaling",
    "holdout",
    "load_arrays",
    "load_dataset",
    "load_image_folder",
    "load_npz",
    "load_tfds_arrays",
    "pixel_scaling",
    "read_idx",
]
