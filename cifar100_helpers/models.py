"""Model builders, one per recipe family. Every model takes uint8-range RGB images (0-255) and
returns class probabilities, so a saved model needs no outside preprocessing."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from .config import RunConfig
from .errors import ConfigError

NUM_CLASSES = 100
SEED_WEIGHTS_FILE = "efficientnetv2-l_notop.h5"
SEED_WEIGHTS_URL = f"https://storage.googleapis.com/tensorflow/keras-applications/efficientnet_v2/{SEED_WEIGHTS_FILE}"


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
    x = layers.BatchNormalization(momentum=momentum, epsilon=1e-5)(x)
    return layers.Activation("gelu")(x)


def build_airbench(cfg: RunConfig, whitening_images: np.ndarray | None = None) -> keras.Model:
    """airbench-style net: frozen whitening conv, then per width conv-pool-BN-GELU, conv-BN-GELU."""
    inputs = keras.Input((cfg.image_size, cfg.image_size, 3), name="image")
    x = layers.Rescaling(1 / 255)(inputs)
    whiten = layers.Conv2D(24, 2, padding="valid", trainable=False, name="whiten")
    x = whiten(x)
    if whitening_images is not None:
        whiten.set_weights(list(whitening_filters(whitening_images)))
    x = layers.Activation("gelu")(x)
    for width in cfg.widths:
        x = layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
        x = layers.MaxPooling2D(2)(x)
        x = layers.Activation("gelu")(layers.BatchNormalization(momentum=cfg.bn_momentum, epsilon=1e-5)(x))
        x = conv_bn(x, width, cfg.bn_momentum)
    x = layers.GlobalMaxPooling2D()(x)
    outputs = layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="airbench")


def build_seed(cfg: RunConfig, whitening_images: np.ndarray | None = None) -> keras.Model:
    """The student team's model: ImageNet EfficientNetV2L at 32x32 with their Sequential head.

    Their filter counts, dropout rate, batch size and learning rate were only in screenshots; the
    values in the ``seed`` recipe (Conv2D 256, Dropout 0.3, Dense 256, batch 64, RMSprop 1e-4) are
    plausible choices, not theirs. ``preprocess_input`` is applied inside the model (for V2 it is
    the identity: the backbone rescales 0-255 pixels itself).
    """
    try:
        backbone = keras.applications.EfficientNetV2L(
            weights=cfg.weights, include_top=False, input_shape=(cfg.image_size, cfg.image_size, 3)
        )
    except Exception as exc:  # a failed download surfaces as many exception types
        if cfg.weights != "imagenet":
            raise
        raise ConfigError(
            f"Could not fetch the ImageNet weights for EfficientNetV2L ({str(exc).splitlines()[0][:120]}). "
            f"Copy {SEED_WEIGHTS_FILE} (from {SEED_WEIGHTS_URL}) into ~/.keras/models/, "
            "or train from scratch with --set weights=None."
        ) from None
    inputs = keras.Input((cfg.image_size, cfg.image_size, 3), name="image")
    x = keras.applications.efficientnet_v2.preprocess_input(inputs)
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
    return keras.Model(inputs, head(backbone(x)), name="seed_efficientnetv2l")


def forward_check(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """Run one batch through the model; fail loudly unless each row is a probability distribution."""
    probs = model.predict(images, verbose=0)
    if probs.shape != (len(images), NUM_CLASSES) or not np.allclose(probs.sum(axis=1), 1, atol=1e-3):
        raise ValueError(f"model output {probs.shape} is not one probability row per image")
    return probs


BUILDERS = {"airbench": build_airbench, "seed": build_seed}


def build(cfg: RunConfig, whitening_images: np.ndarray | None = None) -> keras.Model:
    """The recipe's model; ``whitening_images`` (training images) initialise airbench's first conv."""
    if cfg.model not in BUILDERS:
        raise ConfigError(f"Unknown model '{cfg.model}'. Valid: {', '.join(BUILDERS)}.")
    return BUILDERS[cfg.model](cfg, whitening_images)
