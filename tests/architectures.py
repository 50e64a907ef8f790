"""Small models of many shapes, for tests that must hold on every architecture."""

import keras
import numpy as np

layers = keras.layers


def randomize_batchnorm(model, seed=0):
    """Gives every BatchNormalization non-trivial gamma, beta and statistics.

    With beta = 0 and moving mean = 0, a zeroed channel stays zero after
    BatchNormalization and the masked-vs-slimmed trap goes unnoticed.
    """
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            randomize_batchnorm(layer, seed)
        if isinstance(layer, layers.BatchNormalization):
            values = []
            for variable in layer.weights:
                name = variable.path.split("/")[-1]
                shape = variable.shape
                if name == "moving_variance":
                    values.append(rng.uniform(0.5, 2.0, shape))
                elif name == "gamma":
                    values.append(rng.uniform(0.5, 1.5, shape))
                else:
                    values.append(rng.normal(0.0, 0.5, shape))
            layer.set_weights([v.astype("float32") for v in values])
    return model


def plain_cnn():
    inputs = keras.Input((12, 12, 1))
    x = layers.Conv2D(6, 3, activation="relu", name="conv1")(inputs)
    x = layers.Conv2D(8, 3, activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(12, activation="relu", name="fc1")(x)
    outputs = layers.Dense(4, name="logits")(x)
    return keras.Model(inputs, outputs, name="plain_cnn")


def vgg_bn():
    inputs = keras.Input((16, 16, 3))
    x = inputs
    for index, filters in enumerate((8, 8, 16)):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{index}")(x)
        x = layers.BatchNormalization(name=f"bn{index}")(x)
        x = layers.ReLU(name=f"relu{index}")(x)
        if index != 1:
            x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.3)(x)
    x = layers.Dense(10, activation="relu", name="fc")(x)
    outputs = layers.Dense(5, activation="softmax", name="predictions")(x)
    return randomize_batchnorm(keras.Model(inputs, outputs, name="vgg_bn"))


def _basic_block(x, filters, stride, name):
    shortcut = x
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", name=f"{name}_conv1")(x)
    y = layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = layers.Activation("relu", name=f"{name}_relu1")(y)
    y = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv2")(y)
    y = layers.BatchNormalization(name=f"{name}_bn2")(y)
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, name=f"{name}_proj")(x)
        shortcut = layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.Activation("relu", name=f"{name}_out")(y)


def resnet20(input_shape=(16, 16, 3), blocks=3, widths=(16, 32, 64)):
    """CIFAR ResNet (3 stages x `blocks` basic blocks; 20 layers for 3)."""
    inputs = keras.Input(input_shape)
    x = layers.Conv2D(widths[0], 3, padding="same", name="stem")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    for stage, filters in enumerate(widths):
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            x = _basic_block(x, filters, stride, f"s{stage}b{block}")
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(10, name="logits")(x)
    return randomize_batchnorm(keras.Model(inputs, outputs, name="resnet20"))


def densenet_block():
    inputs = keras.Input((10, 10, 3))
    x = layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    for index in range(3):
        y = layers.BatchNormalization(name=f"d{index}_bn")(x)
        y = layers.ReLU(name=f"d{index}_relu")(y)
        y = layers.Conv2D(4, 3, padding="same", name=f"d{index}_conv")(y)
        x = layers.Concatenate(name=f"d{index}_concat")([x, y])
    x = layers.BatchNormalization(name="final_bn")(x)
    x = layers.ReLU()(x)
    x = layers.Conv2D(6, 1, name="transition")(x)
    x = layers.AveragePooling2D(2)(x)
    x = layers.GlobalMaxPooling2D()(x)
    outputs = layers.Dense(3, name="logits")(x)
    return randomize_batchnorm(keras.Model(inputs, outputs, name="densenet_block"))


def bn_offset_model():
    """Conv -> BN with beta != 0 and non-zero moving means -> ReLU -> Add."""
    inputs = keras.Input((8, 8, 2))
    x = layers.Conv2D(6, 3, padding="same", name="a")(inputs)
    x = layers.BatchNormalization(name="a_bn")(x)
    y = layers.Conv2D(6, 3, padding="same", name="b")(x)
    y = layers.BatchNormalization(name="b_bn")(y)
    x = layers.ReLU()(layers.Add()([x, y]))
    x = layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = layers.PReLU(name="prelu")(x)
    x = layers.SeparableConv2D(5, 3, depth_multiplier=2, name="sep")(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(3, name="logits")(x)
    model = keras.Model(inputs, outputs, name="bn_offset")
    randomize_batchnorm(model)
    prelu = model.get_layer("prelu")
    prelu.set_weights([np.random.default_rng(1).uniform(0.1, 0.5, prelu.weights[0].shape).astype("float32")])
    return model


def mobilenet_v2():
    return randomize_batchnorm(
        keras.applications.MobileNetV2(
            weights=None, input_shape=(32, 32, 3), alpha=0.35, classes=7
        )
    )


def resnet50():
    return randomize_batchnorm(
        keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=6)
    )


def nested_backbone():
    """A keras.applications backbone nested inside an outer functional model."""
    backbone = keras.applications.MobileNetV2(
        weights=None, input_shape=(32, 32, 3), alpha=0.35, include_top=False
    )
    inputs = keras.Input((32, 32, 3))
    x = backbone(inputs)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(16, activation="relu", name="head")(x)
    outputs = layers.Dense(4, name="logits")(x)
    return randomize_batchnorm(keras.Model(inputs, outputs, name="nested"))


def sequential_cnn():
    return keras.Sequential(
        [
            keras.Input((10, 10, 1)),
            layers.Conv2D(4, 3, activation="relu", name="c1"),
            layers.Conv2D(6, 3, activation="relu", name="c2"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(3, name="logits"),
        ],
        name="sequential_cnn",
    )


def se_reshape():
    """Squeeze-and-excitation written the usual way: pool -> Dense -> Dense -> Reshape((1, 1, C)) -> Multiply."""
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(8, 3, padding="same", name="c")(inputs)
    x = layers.BatchNormalization(name="c_bn")(x)
    x = layers.Activation("swish", name="c_act")(x)
    s = layers.GlobalAveragePooling2D(name="squeeze_pool")(x)
    s = layers.Dense(4, activation="relu", name="squeeze")(s)
    s = layers.Dense(8, activation="sigmoid", name="excite")(s)
    s = layers.Reshape((1, 1, 8), name="excite_reshape")(s)
    x = layers.Multiply(name="scale")([x, s])
    x = layers.Conv2D(6, 1, name="project")(x)
    x = layers.BatchNormalization(name="project_bn")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(3, name="logits")(x)
    return randomize_batchnorm(keras.Model(inputs, outputs, name="se_reshape"))


def convnext_block():
    """ConvNeXt-style: depthwise 7x7, LayerNormalization, Dense MLP on the feature map, residual add."""
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(8, 2, strides=2, name="stem")(inputs)
    shortcut = x
    y = layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    y = layers.LayerNormalization(epsilon=1e-6, name="ln")(y)
    y = layers.Dense(32, name="pw1")(y)
    y = layers.Activation("gelu", name="gelu")(y)
    y = layers.Dense(8, name="pw2")(y)
    x = layers.Add(name="residual")([shortcut, y])
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(3, name="logits")(x)
    return keras.Model(inputs, outputs, name="convnext_block")


def lambda_middle():
    """A Lambda between two convolutions: its channels stay, the rest is pruned."""
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(6, 3, padding="same", activation="relu", name="before")(inputs)
    x = layers.Lambda(lambda t: t * 2.0 + 1.0, name="lambda")(x)
    x = layers.Conv2D(8, 3, padding="same", name="after")(x)
    x = layers.BatchNormalization(name="after_bn")(x)
    x = layers.ReLU(name="after_relu")(x)
    x = layers.Conv2D(4, 1, activation="relu", name="last")(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(3, name="logits")(x)
    return randomize_batchnorm(keras.Model(inputs, outputs, name="lambda_middle"))


def decoder_chain():
    """Rescaling at the input, Conv2DTranspose / UpSampling / Cropping / ZeroPadding / Permute chains."""
    inputs = keras.Input((6, 6, 2))
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    x = layers.Conv2D(6, 3, padding="same", activation="relu", name="enc")(x)
    x = layers.Conv2DTranspose(5, 3, strides=2, padding="same", name="up_conv")(x)
    x = layers.BatchNormalization(name="up_bn")(x)
    x = layers.ReLU(name="up_relu")(x)
    x = layers.UpSampling2D(2, name="up")(x)
    x = layers.Cropping2D(((1, 1), (2, 0)), name="crop")(x)
    x = layers.ZeroPadding2D(1, name="pad")(x)
    x = layers.Permute((2, 1, 3), name="transpose_hw")(x)
    x = layers.Conv2D(4, 3, activation="relu", name="dec")(x)
    x = layers.GlobalMaxPooling2D()(x)
    outputs = layers.Dense(2, name="logits")(x)
    return randomize_batchnorm(keras.Model(inputs, outputs, name="decoder_chain"))


ARCHITECTURES = {
    "plain_cnn": plain_cnn,
    "vgg_bn": vgg_bn,
    "resnet20": resnet20,
    "densenet_block": densenet_block,
    "bn_offset": bn_offset_model,
    "mobilenet_v2": mobilenet_v2,
    "resnet50": resnet50,
    "nested_backbone": nested_backbone,
    "sequential_cnn": sequential_cnn,
    "se_reshape": se_reshape,
    "convnext_block": convnext_block,
    "lambda_middle": lambda_middle,
    "decoder_chain": decoder_chain,
}
