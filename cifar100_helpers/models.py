"""Model builders, one per recipe family. Every model takes uint8-range RGB images (0-255) and
returns class probabilities, so a saved model needs no outside preprocessing."""

from __future__ import annotations

import inspect
import math
import sys

import keras
import numpy as np
from keras import layers

from .batchnorm import FusedBatchNorm
from .config import BACKBONE_NAMES, SEED_BACKBONE, RunConfig
from .data import IMAGE_SHAPE
from .errors import ConfigError

NUM_CLASSES = 100
BACKBONES = {name: getattr(keras.applications, name) for name in BACKBONE_NAMES}


def whitening_filters(images: np.ndarray, size: int = 2, eps: float = 5e-4) -> tuple[np.ndarray, np.ndarray]:
    """Conv kernel (size, size, 3, 2*size*size*3) and bias that whiten image patches.

    Patches of ``images`` (uint8 NHWC, scaled to 0-1) are decorrelated by the covariance's
    eigenvectors scaled by 1/sqrt(eigenvalue + eps); each filter also appears negated so that a
    following GELU keeps both signs (the airbench initialisation).
    """
    x = images.astype(np.float32) / 255.0
    h, w = x.shape[1] - size + 1, x.shape[2] - size + 1
    patches = np.stack([x[:, i : i + h, j : j + w, :] for i in range(size) for j in range(size)], axis=3)
    patches = patches.reshape(-1, size * size * 3)
    mean = patches.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(patches - mean, rowvar=False))
    scaled = eigenvectors / np.sqrt(eigenvalues + eps)
    kernel = np.concatenate([scaled, -scaled], axis=1)
    bias = -mean @ kernel
    return kernel.reshape(size, size, 3, -1).astype(np.float32), bias.astype(np.float32)


def conv_bn(x, width: int, momentum: float):
    x = layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
    x = FusedBatchNorm(momentum=momentum, epsilon=1e-5)(x)
    return layers.Activation("gelu")(x)


def build_airbench(cfg: RunConfig, whitening_images: np.ndarray | None = None) -> keras.Model:
    """airbench-style net: frozen whitening conv, then per width conv-pool-BN-GELU, conv-BN-GELU."""
    size = None if cfg.start_size else cfg.image_size  # progressive resizing feeds several sizes
    inputs = keras.Input((size, size, 3), name="image")
    x = layers.Rescaling(1 / 255)(inputs)
    whiten = layers.Conv2D(24, 2, padding="valid", trainable=False, name="whiten")
    x = whiten(x)
    if whitening_images is not None:
        whiten.set_weights(list(whitening_filters(whitening_images)))
    x = layers.Activation("gelu")(x)
    for width in cfg.widths:
        x = layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
        x = layers.MaxPooling2D(2)(x)
        x = layers.Activation("gelu")(FusedBatchNorm(momentum=cfg.bn_momentum, epsilon=1e-5)(x))
        x = conv_bn(x, width, cfg.bn_momentum)
    x = layers.GlobalMaxPooling2D()(x)
    outputs = layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="airbench")


def weights_file(constructor) -> tuple[str, str]:
    """The ImageNet no-top weights file a keras.applications constructor loads, and its URL."""
    name = inspect.signature(constructor).parameters["name"].default
    file = f"{name}_notop.h5"
    return file, sys.modules[constructor.__module__].BASE_WEIGHTS_PATH + file


def pretrained(constructor, cfg: RunConfig, **kwargs) -> keras.Model:
    """A keras.applications backbone without its top at ``cfg.image_size``; ``cfg.weights`` is
    "imagenet" (Keras's download or its cache in ~/.keras/models/), a local file, or None."""
    shape = (cfg.image_size, cfg.image_size, 3)
    try:
        return constructor(weights=cfg.weights, include_top=False, input_shape=shape, **kwargs)
    except Exception as exc:  # a failed download surfaces as many exception types
        if cfg.weights != "imagenet":
            raise
        file, url = weights_file(constructor)
        raise ConfigError(
            f"Could not fetch the ImageNet weights for {constructor.__name__} ({str(exc).splitlines()[0][:120]}). "
            f"Copy {file} (from {url}) into ~/.keras/models/, or pass --weights PATH to a local copy, "
            "or train from scratch with --set weights=None."
        ) from None


def resized(inputs, cfg: RunConfig):
    """Upscale CIFAR's 32x32 images to ``cfg.image_size`` inside the model (on the accelerator)."""
    if cfg.image_size == IMAGE_SHAPE[0]:
        return inputs
    return layers.Resizing(cfg.image_size, cfg.image_size, interpolation="bilinear", name="resize")(inputs)


def build_seed(cfg: RunConfig, whitening_images: np.ndarray | None = None) -> keras.Model:
    """The student team's model: ImageNet EfficientNetV2L at 32x32 (or ``cfg.backbone``) with their Sequential head.

    Their filter counts, dropout rate, batch size and learning rate were only in screenshots; the
    values in the ``seed`` recipe (Conv2D 256, Dropout 0.3, Dense 256, batch 64, RMSprop 1e-4) are
    plausible choices, not theirs. ``preprocess_input`` is applied inside the model (for V2 it is
    the identity: the backbone rescales 0-255 pixels itself).
    """
    inputs = keras.Input(IMAGE_SHAPE, name="image")
    x = keras.applications.efficientnet_v2.preprocess_input(resized(inputs, cfg))
    head = keras.Sequential(
        [
            layers.Conv2D(cfg.head_filters, 3, padding="same", activation="elu"),
            layers.BatchNormalization(),
            layers.Dropout(cfg.dropout),
            layers.GlobalAveragePooling2D(),
            layers.Flatten(),
            layers.Dense(cfg.head_units, activation="elu"),
            layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32"),
        ],
        name="head",
    )
    name = cfg.backbone or SEED_BACKBONE
    return keras.Model(inputs, head(pretrained(BACKBONES[name], cfg)(x)), name=f"seed_{name.lower()}")


def backbone(cfg: RunConfig) -> keras.Model:
    """The transfer recipe's backbone, global-average-pooled. Keras's EfficientNetV2 and ConvNeXt
    include their own preprocessing and expect 0-255 pixels; EfficientNetV2 has stochastic depth
    (drop-connect 0.2) built in, Keras's ConvNeXt constructors do not expose it."""
    return pretrained(BACKBONES[cfg.backbone], cfg, pooling="avg")


def build_transfer(cfg: RunConfig, whitening_images: np.ndarray | None = None) -> keras.Model:
    """An ImageNet backbone fine-tuned at ``cfg.image_size``: resize, backbone, dropout, softmax."""
    inputs = keras.Input(IMAGE_SHAPE, name="image")
    x = backbone(cfg)(resized(inputs, cfg))
    x = layers.Dropout(cfg.dropout)(x)
    outputs = layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=f"transfer_{cfg.backbone.lower()}")


def load(path, compile: bool = True, precision: str | None = None) -> keras.Model:
    """A model this package saved (``model.keras``, ``model_untrained.keras``): Keras's loader, with the custom
    layer and optimizers those files name registered (by importing this module). With ``precision`` (a Keras dtype
    policy), a model built under another policy (02 ran on other hardware: a GPU's float16, a CPU's bfloat16) is
    rebuilt under this one with the same weights, which are float32 under every policy."""
    model = keras.models.load_model(path, compile=compile)
    built = precision_of(model)
    if precision is None or built == precision:
        return model
    print(f"{path} was built in {built}; this runtime trains in {precision}: rebuilt in {precision}, same weights.")
    return in_precision(model, precision)


def in_precision(model: keras.Model, precision: str) -> keras.Model:
    """``model`` itself when built under dtype policy ``precision``; else a copy built under it with the same
    weights (float32 under every policy). Export writes the float32 copy of a mixed-precision model."""
    built = precision_of(model)
    if built == precision:
        return model
    serialized = with_policy(keras.saving.serialize_keras_object(model), built, precision)
    copy = keras.saving.deserialize_keras_object(serialized)
    copy.set_weights(model.get_weights())
    return copy


def precision_of(model: keras.Model) -> str:
    """The dtype policy the model's weighted layers were built with ("float32", "mixed_float16", ...): a saved
    model keeps it, whatever the runtime that loads it would choose."""
    weighted = [layer for layer in model._flatten_layers() if layer.weights and not isinstance(layer, keras.Model)]
    return weighted[0].dtype_policy.name if weighted else keras.mixed_precision.global_policy().name


def with_policy(config, old: str, new: str):
    """A model config with every layer under dtype policy ``old`` moved to ``new`` (layers pinned to another
    policy, such as the float32 output, keep theirs)."""
    if isinstance(config, list):
        return [with_policy(item, old, new) for item in config]
    if not isinstance(config, dict):
        return config
    policy = config.get("class_name") in ("DTypePolicy", "FloatDTypePolicy")  # Keras 3.10 wrote the latter
    if policy and isinstance(config.get("config"), dict) and config["config"].get("name") == old:
        return {**config, "config": {**config["config"], "name": new}}
    return {key: with_policy(value, old, new) for key, value in config.items()}


def forward_check(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """Run one batch through the model; fail loudly unless each row is a probability distribution."""
    probs = model.predict(images, verbose=0)
    if probs.shape != (len(images), NUM_CLASSES) or not np.allclose(probs.sum(axis=1), 1, atol=1e-3):
        raise ValueError(f"model output {probs.shape} is not one probability row per image")
    return probs


BUILDERS = {"airbench": build_airbench, "seed": build_seed, "transfer": build_transfer}
SHOWN_WITH = {"airbench": (conv_bn,), "seed": (), "transfer": (backbone,)}  # helpers the builder calls, shown too


def builder_source(cfg: RunConfig) -> str:
    """The Python source of the recipe's model builder and the helpers it calls (what notebook 02 shows)."""
    return "\n\n".join(inspect.getsource(f) for f in (*SHOWN_WITH[cfg.model], BUILDERS[cfg.model]))


def training_flops(model: keras.Model, image_size: int) -> dict:
    """Floating-point operations per ``image_size`` image of the model's convolutions and dense layers (a
    multiply-add counted as 2; normalisation, activations and pooling left out), counted from the layers' shapes:
    ``forward``, and ``training``: forward, plus the gradient for each trainable layer's weights and, above the first
    trainable layer, for its input (each as much again as its forward). A model taking any size (progressive
    resizing) is counted on a copy built for ``image_size``."""
    if None in model.input.shape[1:3]:
        model = keras.models.clone_model(model, input_tensors=keras.Input((image_size, image_size, 3)))
    forward = training = 0
    trainable_below = False
    for layer in flat_layers(model):
        if isinstance(layer, layers.DepthwiseConv2D):
            kh, kw = layer.kernel_size
            ops = 2 * math.prod(layer.output.shape[1:]) * kh * kw
        elif isinstance(layer, layers.Conv2D):
            kh, kw = layer.kernel_size
            ops = 2 * math.prod(layer.output.shape[1:]) * kh * kw * layer.input.shape[-1] // layer.groups
        elif isinstance(layer, layers.Dense):
            ops = 2 * math.prod(layer.output.shape[1:]) * layer.input.shape[-1]
        else:
            continue
        forward += ops
        training += ops * (1 + layer.trainable + trainable_below)
        trainable_below |= layer.trainable
    return {"forward": forward, "training": training}


def flat_layers(model: keras.Model) -> list:
    """The model's layers, a nested model's (a backbone) in its place."""
    return [
        inner for layer in model.layers for inner in (flat_layers(layer) if isinstance(layer, keras.Model) else [layer])
    ]


def block_table(model: keras.Model) -> str:
    """The model's layers as a compact table (activations folded into the layer before them): name, kind, output
    shape, parameters; a nested model (a backbone, the seed's head) is one row."""
    rows = [("layer", "kind", "output shape", "parameters")]
    for layer in model.layers:
        if isinstance(layer, layers.InputLayer):
            continue
        kind = type(layer).__name__
        if isinstance(layer, layers.Activation) and len(rows) > 1:
            name, previous, shape, count = rows.pop()
            rows.append((name, f"{previous} + {layer.get_config()['activation']}", shape, count))
            continue
        shape = str(tuple(layer.output.shape)).replace("None", "N")
        rows.append((layer.name, kind, shape, f"{layer.count_params():,}"))
    width = max(len(r[0]) for r in rows)
    kinds = max(len(r[1]) for r in rows)
    return "\n".join(f"{n:<{width}}  {k:<{kinds}}  {s:<20}  {c:>12}" for n, k, s, c in rows)


def build(cfg: RunConfig, whitening_images: np.ndarray | None = None) -> keras.Model:
    """The recipe's model; ``whitening_images`` (training images) initialise airbench's first conv."""
    if cfg.model not in BUILDERS:
        raise ConfigError(f"Unknown model '{cfg.model}'. Valid: {', '.join(BUILDERS)}.")
    return BUILDERS[cfg.model](cfg, whitening_images)
