"""Write a small, learnable dataset in the exact CIFAR-100 python on-disk layout.

Tests and `make demo` read it through the real reader, so the code that loads the real archive is
what runs offline. Each fine class gets its own colour and stripe pattern, plus noise.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

FINE_NAMES = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly "
    "camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup "
    "dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower "
    "leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid "
    "otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray "
    "road rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel streetcar "
    "sunflower sweet_pepper table tank telephone television tiger tractor train trout tulip turtle "
    "wardrobe whale willow_tree wolf woman worm"
).split()
COARSE_NAMES = (
    "aquatic_mammals fish flowers food_containers fruit_and_vegetables household_electrical_devices "
    "household_furniture insects large_carnivores large_man-made_outdoor_things "
    "large_natural_outdoor_scenes large_omnivores_and_herbivores medium_mammals "
    "non-insect_invertebrates people reptiles small_mammals trees vehicles_1 vehicles_2"
).split()
# The standard CIFAR-100 superclass of each fine class (index = fine label).
FINE_TO_COARSE = (
    4,
    1,
    14,
    8,
    0,
    6,
    7,
    7,
    18,
    3,
    3,
    14,
    9,
    18,
    7,
    11,
    3,
    9,
    7,
    11,
    6,
    11,
    5,
    10,
    7,
    6,
    13,
    15,
    3,
    15,
    0,
    11,
    1,
    10,
    12,
    14,
    16,
    9,
    11,
    5,
    5,
    19,
    8,
    8,
    15,
    13,
    14,
    17,
    18,
    10,
    16,
    4,
    17,
    4,
    2,
    0,
    17,
    4,
    18,
    17,
    10,
    3,
    2,
    12,
    12,
    16,
    12,
    1,
    9,
    19,
    2,
    10,
    0,
    1,
    16,
    12,
    9,
    13,
    15,
    13,
    16,
    19,
    2,
    4,
    6,
    19,
    5,
    5,
    8,
    19,
    18,
    1,
    2,
    15,
    6,
    0,
    17,
    8,
    14,
    13,
)


def class_images(fine: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 (N, 32, 32, 3): a class colour, a class-specific stripe direction and frequency, noise."""
    palette = np.random.default_rng(12345).uniform(40, 215, size=(len(FINE_NAMES), 3))
    angle = (fine % 10) * np.pi / 10
    freq = 0.25 + 0.15 * (fine // 10 % 5)
    yy, xx = np.mgrid[0:32, 0:32]
    phase = rng.uniform(0, 2 * np.pi, size=len(fine))
    coord = np.cos(angle)[:, None, None] * xx + np.sin(angle)[:, None, None] * yy
    stripes = np.sin(freq[:, None, None] * coord + phase[:, None, None])
    images = palette[fine][:, None, None, :] + 45 * stripes[..., None]
    images += rng.normal(0, 12, size=images.shape)
    return np.clip(images, 0, 255).astype(np.uint8)


def batch(per_class: int, rng: np.random.Generator, label: str) -> dict:
    fine = np.repeat(np.arange(len(FINE_NAMES)), per_class)
    fine = fine[rng.permutation(len(fine))]
    x = class_images(fine, rng)
    return {
        "filenames": [f"generated_{label}_{i:05d}.png" for i in range(len(fine))],
        "batch_label": f"{label}ing batch 1 of 1 (generated)",
        "fine_labels": fine.tolist(),
        "coarse_labels": [FINE_TO_COARSE[f] for f in fine],
        "data": x.transpose(0, 3, 1, 2).reshape(len(fine), 3072),
    }


def write_archive(path: str | Path, train_per_class: int = 20, test_per_class: int = 5, seed: int = 0) -> Path:
    """Write ``cifar-100-python.tar.gz`` holding ``cifar-100-python/{train,test,meta}`` pickles."""
    rng = np.random.default_rng(seed)
    members = {
        "train": batch(train_per_class, rng, "train"),
        "test": batch(test_per_class, rng, "test"),
        "meta": {"fine_label_names": list(FINE_NAMES), "coarse_label_names": list(COARSE_NAMES)},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, obj in members.items():
            raw = pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(f"cifar-100-python/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path
