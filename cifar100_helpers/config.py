"""One frozen, validated config object per run, and the registry of named recipes."""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass

from .errors import BudgetError, ConfigError

EPOCH_BUDGET = 10  # the study's rule: at most 10 passes over the training data


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run. Build it with :func:`make_config`, never by hand."""

    recipe: str
    model: str  # a builder in models.BUILDERS
    epochs: int = EPOCH_BUDGET
    batch_size: int = 256
    optimizer: str = "sgd"  # "sgd" (Nesterov momentum) or "rmsprop"
    learning_rate: float = 0.1  # peak value, reached after the warm-up
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    schedule: str = "cosine"  # "cosine": linear warm-up then cosine decay to 0; "constant"
    label_smoothing: float = 0.0
    crop_pad: int = 4  # random translation of up to this many pixels; 0 turns it off
    flip: bool = True  # random horizontal flips in training
    tta: bool = True  # also report accuracy averaged over the image and its mirror
    widths: tuple[int, ...] = (64, 128, 256)
    bn_momentum: float = 0.9
    image_size: int = 32
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
        learning_rate=1e-4,
        weight_decay=0.0,
        warmup_epochs=0.0,
        schedule="constant",
        crop_pad=0,
        flip=False,
        tta=False,
        widths=(),
        dropout=0.3,
        head_filters=256,
        head_units=256,
        weights="imagenet",
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


def resolve_recipe(name: str) -> str:
    """``auto`` picks the recipe for this machine; ``cpu`` until GPU recipes join the registry."""
    return "cpu" if name == "auto" else name


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
    positive_int(cfg.batch_size, "batch size (--batch-size)")
    if not 0 <= cfg.val_fraction < 0.5:
        raise ConfigError(f"validation fraction must be in [0, 0.5), got {cfg.val_fraction!r} (--val-fraction).")
    if cfg.optimizer not in ("sgd", "rmsprop"):
        raise ConfigError(f"optimizer must be 'sgd' or 'rmsprop', got {cfg.optimizer!r}.")
    if cfg.schedule not in ("cosine", "constant"):
        raise ConfigError(f"schedule must be 'cosine' or 'constant', got {cfg.schedule!r}.")
    if cfg.learning_rate <= 0:
        raise ConfigError(f"learning rate must be positive, got {cfg.learning_rate!r} (--learning-rate).")
    if cfg.image_size < 16:
        raise ConfigError(f"image size {cfg.image_size} is too small: use at least 16 (--image-size).")
