import keras
import numpy as np

from cifar100_helpers import config, gradcam, models


def check(model, images):
    """Maps for the predicted classes: image-sized, in [0, 1], each scaled to its maximum (or all zero)."""
    maps = gradcam.heatmaps(model, images, model.predict(images, verbose=0).argmax(axis=1))
    assert maps.shape == (len(images), 32, 32) and maps.min() >= 0
    peaks = np.round(maps.max(axis=(1, 2)), 5)
    assert set(peaks) <= {0.0, 1.0} and 1.0 in peaks


def test_gradcam_on_airbench_uses_its_last_feature_map(archive_images):
    model = models.build(config.make_config("smoke"), archive_images)
    outer, inner = gradcam.feature_layer(model)
    assert inner is None and outer.output.shape[1] == 3  # 32 -> 31 (whiten) -> 15 -> 7 -> 3
    check(model, archive_images[:8])


def test_gradcam_reaches_inside_a_pretrained_backbone(archive_images):
    cfg = config.make_config("transfer", weights=None, backbone="EfficientNetV2B0", image_size=64)
    model = models.build(cfg)
    outer, inner = gradcam.feature_layer(model)
    assert isinstance(outer, keras.Model) and inner.output.shape[1] == 2  # 64 px / 32
    check(model, archive_images[:8])
    keras.backend.clear_session()
