"""One frozen, validated config object per run, and the registry of named recipes."""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass

from .errors import BudgetError, ConfigError

EPOCH_BUDGET = 10  # the study's rule: at most 10 passes over the training data
TTA_MODES = ("none", "flip", "flip_translate")
BACKBONE_NAMES = (
    "EfficientNetV2B0", "EfficientNetV2B1", "EfficientNetV2B2", "EfficientNetV2B3",
    "EfficientNetV2S", "EfficientNetV2M", "EfficientNetV2L",
    "ConvNeXtTiny", "ConvNeXtSmall", "ConvNeXtBase",
)  # fmt: skip


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run. Build it with :func:`make_config`, never by hand."""

    recipe: str
    model: str  # a builder in models.BUILDERS
    epochs: int = EPOCH_BUDGET
    batch_size: int = 256  # per replica, as tuned on one device
    max_global_batch: int = 1024  # with several replicas the per-replica batch shrinks to stay at or below this
    optimizer: str = "sgd"  # "sgd" (Nesterov momentum), "adamw" or "rmsprop"
    learning_rate: float = 0.1  # peak value, reached after the warm-up
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    schedule: str = "cosine"  # "cosine": linear warm-up then cosine decay to 0; "constant"
    label_smoothing: float = 0.0
    crop_pad: int = 4  # random translation of up to this many pixels; 0 turns it off
    flip: bool = True  # random horizontal flips in training
    crop_scale: float = 0.0  # random-resized-crop: smallest fraction of the image area kept; 0 turns it off
    randaugment: float = 0.0  # RandAugment strength in [0, 1]: magnitudes up to this share of each op's maximum
    # (augment.py, per image); 0 turns it off
    mixup: float = 0.0  # MixUp alpha; 0 turns it off
    cutmix: float = 0.0  # CutMix factor; 0 turns it off
    ema: float = 0.0  # momentum of the weight EMA (after its warm-up, see training.WeightEMA); 0 turns it off
    tta: str = "flip"  # test-time augmentation reported beside plain accuracy: "none", "flip", "flip_translate"
    widths: tuple[int, ...] = (64, 128, 256)
    bn_momentum: float = 0.9
    image_size: int = 32  # what the network sees; CIFAR's 32x32 images are resized inside the model
    start_size: int = 0  # progressive resizing: first epochs at this size, growing to 32 (0: off)
    backbone: str = ""  # transfer: a keras.applications constructor name in models.BACKBONES
    mixed_precision: bool = True  # float16 on capable GPUs, bfloat16 on TPU; CPUs always use float32
    deterministic: bool = False  # bit-for-bit repeatable on CPU (op determinism, no XLA); slower
    dropout: float = 0.0
    head_filters: int = 0  # seed head: Conv2D filters
    head_units: int = 0  # seed head: Dense units
    weights: str | None = None  # "imagenet", a weights file, or None for random initialisation
    val_fraction: float = 0.1  # stratified hold-out from the training split (0.1 = 5,000 images)
    seed: int = 0
    data: str | None = None  # archive or folder; None: $CIFAR100_DATA, Keras cache, download
    verify: bool = True  # check the official archive's sha256
    generated: bool = False  # train on a small generated dataset (tests, demo)
    allow_over_budget: bool = False

    @property
    def over_budget(self) -> bool:
        return self.epochs > EPOCH_BUDGET

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


RECIPES: dict[str, RunConfig] = {
    "cpu": RunConfig(
        recipe="cpu",
        model="airbench",
        batch_size=256,
        learning_rate=0.2,
        weight_decay=5e-4,
        label_smoothing=0.2,
        widths=(64, 128, 256),
        bn_momentum=0.6,
    ),
    "seed": RunConfig(
        recipe="seed",
        model="seed",
        batch_size=64,
        optimizer="rmsprop",
        max_global_batch=256,
        learning_rate=1e-4,
        weight_decay=0.0,
        warmup_epochs=0.0,
        schedule="constant",
        crop_pad=0,
        flip=False,
        tta="none",
        widths=(),
        dropout=0.3,
        head_filters=256,
        head_units=256,
        weights="imagenet",
    ),
    "transfer": RunConfig(
        recipe="transfer",
        model="transfer",
        backbone="EfficientNetV2S",
        image_size=224,
        batch_size=64,
        max_global_batch=256,
        optimizer="adamw",
        learning_rate=2e-4,
        weight_decay=0.05,
        warmup_epochs=1.0,
        label_smoothing=0.1,
        crop_pad=0,
        crop_scale=0.35,
        randaugment=0.3,
        ema=0.999,
        dropout=0.2,
        widths=(),
        weights="imagenet",
    ),
    "scratch": RunConfig(
        recipe="scratch",
        model="airbench",
        batch_size=1024,
        learning_rate=0.4,
        weight_decay=5e-4,
        label_smoothing=0.2,
        widths=(128, 384, 384),
        bn_momentum=0.6,
        start_size=24,
        ema=0.99,
        tta="flip_translate",
    ),
    "smoke": RunConfig(
        recipe="smoke",
        model="airbench",
        epochs=1,
        batch_size=32,
        learning_rate=0.05,
        label_smoothing=0.1,
        widths=(8, 16, 16),
        generated=True,
        verify=False,
    ),
}
RECIPE_NAMES = (*RECIPES, "auto")
FIELDS = {f.name for f in dataclasses.fields(RunConfig)}


def accelerator_present() -> bool:
    import tensorflow as tf

    from .hardware import tpu_address

    return bool(tf.config.list_physical_devices("GPU") or tpu_address())


def resolve_recipe(name: str) -> str:
    """``auto`` picks the recipe for this machine: ``transfer`` with a GPU or TPU, ``cpu`` without."""
    if name != "auto":
        return name
    return "transfer" if accelerator_present() else "cpu"


def make_config(recipe: str = "auto", **overrides) -> RunConfig:
    """The named recipe with ``overrides`` (any RunConfig fields) applied, validated."""
    name = resolve_recipe(recipe)
    if name not in RECIPES:
        raise ConfigError(f"Unknown recipe '{recipe}'. Valid recipes: {', '.join(RECIPE_NAMES)}.")
    unknown = sorted(set(overrides) - FIELDS)
    if unknown:
        hints = [difflib.get_close_matches(u, FIELDS, n=1) for u in unknown]
        suggestions = "".join(f" (did you mean '{h[0]}'?)" for h in hints if h)
        raise ConfigError(
            f"Unknown parameter(s) {', '.join(unknown)}{suggestions}. Valid: {', '.join(sorted(FIELDS))}."
        )
    if "widths" in overrides:
        overrides["widths"] = tuple(overrides["widths"])
    cfg = dataclasses.replace(RECIPES[name], **overrides)
    validate(cfg)
    return cfg


def from_parameters(recipe: str, data=None, verify=None, epochs=None, seed=0, overrides=None) -> RunConfig:
    """The config a notebook's ``parameters`` cell describes; None keeps the recipe's value."""
    given = {"data": data, "verify": verify, "epochs": epochs}
    return make_config(recipe, seed=seed, **{k: v for k, v in given.items() if v is not None}, **(overrides or {}))


def validate(cfg: RunConfig) -> None:
    def positive_int(value, what: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{what} must be a positive integer, got {value!r}.")

    positive_int(cfg.epochs, "epochs (--epochs)")
    if cfg.over_budget and not cfg.allow_over_budget:
        raise BudgetError(
            f"epochs={cfg.epochs} breaks the study's {EPOCH_BUDGET}-epoch budget. Use --epochs {EPOCH_BUDGET} "
            "or fewer, or pass --allow-over-budget (the report will flag the run)."
        )
    positive_int(cfg.batch_size, "batch size (--set batch_size=...)")
    positive_int(cfg.max_global_batch, "maximum global batch (--set max_global_batch=...)")
    if not 0 <= cfg.ema < 1:
        raise ConfigError(f"ema must be in [0, 1), got {cfg.ema!r} (--set ema=0.99; 0 turns it off).")
    if not 0 <= cfg.val_fraction < 0.5:
        raise ConfigError(
            f"validation fraction must be in [0, 0.5), got {cfg.val_fraction!r} (--set val_fraction=...)."
        )
    if cfg.optimizer not in ("sgd", "adamw", "rmsprop"):
        raise ConfigError(f"optimizer must be 'sgd', 'adamw' or 'rmsprop', got {cfg.optimizer!r}.")
    if cfg.tta not in TTA_MODES:
        raise ConfigError(f"tta must be one of {', '.join(TTA_MODES)}, got {cfg.tta!r}.")
    if cfg.schedule not in ("cosine", "constant"):
        raise ConfigError(f"schedule must be 'cosine' or 'constant', got {cfg.schedule!r}.")
    if cfg.learning_rate <= 0:
        raise ConfigError(f"learning rate must be positive, got {cfg.learning_rate!r} (--set learning_rate=...).")
    if cfg.model in ("transfer", "seed"):
        if cfg.model == "transfer" and cfg.backbone not in BACKBONE_NAMES:
            raise ConfigError(f"Unknown backbone '{cfg.backbone}'. Valid: {', '.join(BACKBONE_NAMES)}.")
        if cfg.image_size < 32:
            raise ConfigError(
                f"image size {cfg.image_size} is too small for {cfg.backbone or 'EfficientNetV2L'}: "
                "use at least 32 (--set image_size=224)."
            )
    elif cfg.image_size < 16:
        raise ConfigError(f"image size {cfg.image_size} is too small: use at least 16 (--set image_size=32).")
    if not 0 <= cfg.crop_scale < 1:
        raise ConfigError(f"crop_scale must be in [0, 1), got {cfg.crop_scale!r} (--set crop_scale=0.35).")
    if cfg.start_size and not 16 <= cfg.start_size <= cfg.image_size:
        raise ConfigError(f"start_size {cfg.start_size} must be between 16 and image_size {cfg.image_size}.")
