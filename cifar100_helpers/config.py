"""One frozen, validated config object per run, and the registry of named recipes."""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass

from . import machine
from .errors import BudgetError, ConfigError

EPOCH_BUDGET = 10  # the study's rule: at most 10 passes over the training data
MAX_EPOCHS = 1000  # even with --allow-over-budget: more is a typo (999999999999 epochs: an ETA of 554 million hours)
SIZES = {  # the cpu network's named sizes, smallest first (docs/results.md, the ladder): widths of its three blocks
    "XXXS": (32, 80, 160),  # for the slowest CPUs: on the AVX2-only EPYC, XXS projected 33.5 min and trained 30.3;
    # XXXS projected 22.1 and trained 18.9 there, 66.96% with TTA (the showcase, docs/results.md)
    "XXS": (40, 96, 192),  # for CPUs without bfloat16 or AVX-512: on the AVX2-only EPYC in float32 its probes
    # projected 24.4 to 33.5 min (2026-12-03); 68.55% with TTA there, in 30.3 min (outputs/avx2-epyc-xxs-seed7)
    "XS": (48, 128, 256),
    "S": (64, 160, 320),
    "M": (96, 256, 512),
}

MARGIN = 1.15  # the time budget's: measured runs / bench's projection: 21.3-21.7 min against 19.0 min (cpu at size M,
# bfloat16, Xeon with AMX, 2026-12-02; docs/results.md), from the first epoch's tracing, validation-free epoch ends and
# callbacks (pace.projected_minutes)


def budget_summary(budget: dict) -> str:
    """What the time budget's probe measured and chose, in words (run.json's ``budget``, from pace.choose_size)."""
    probe = ", ".join(f"{size} {m['images_per_second']:.0f} images/s ({m['projected_minutes']:.1f} min)"
                      for size, m in budget["probe"].items())  # fmt: skip
    chosen = f"chose size {budget['size']}, projected {budget['projected_minutes']:.1f} min"
    if budget["projected_minutes"] > budget["minutes"]:
        chosen += " (the smallest size, projected over the budget: expect an overrun)"
    return f"timed {probe} in {budget['precision']}; {chosen}"


SEED_BACKBONE = "EfficientNetV2L"  # the student team's, for seed when no backbone is named
TTA_MODES = ("none", "flip", "flip_translate", "flip_grid")  # evaluation.TTA_VIEWS
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
    optimizer: str = "sgd"  # "sgd" (Nesterov momentum), "adamw", "rmsprop"
    learning_rate: float = 0.1  # peak value, reached after the warm-up
    momentum: float = 0.9
    weight_decay: float = 5e-4  # Keras's decoupled form: weights shrink by lr x this each step (PyTorch's SGD 5e-4
    # at momentum 0.9 is 10x stronger; docs/results.md "Tuning cpu")
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
    tta: str = "flip"  # test-time augmentation reported beside plain accuracy: one of TTA_MODES
    widths: tuple[int, ...] = (64, 128, 256)
    size: str = ""  # a name in SIZES (sets widths); "auto": the largest whose projected training fits `minutes`
    # (pace.choose_size, timed before training); "": widths as given
    minutes: float = 0.0  # the training-time budget of a run, in minutes, that size "auto" chooses for; 0: none
    bn_momentum: float = 0.9
    image_size: int = 32  # what the network sees; CIFAR's 32x32 images are resized inside the model
    start_size: int = 0  # progressive resizing: first epochs at this size, growing to 32 (0: off)
    backbone: str = ""  # transfer, seed: a keras.applications constructor name in models.BACKBONES ("": SEED_BACKBONE)
    mixed_precision: bool = True  # float16 on capable GPUs, bfloat16 on TPU and bf16-capable CPUs; False: float32
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
        weight_decay=2e-2,  # docs/results.md "Tuning cpu": Keras decays decoupled (lr x wd a step); 1e-2 +2.1 over
        # 5e-4, 2e-2 +0.4 over 1e-2 at widths 96/256/512
        label_smoothing=0.1,  # docs/results.md "Tuning cpu": +1.0 with flip + translate TTA in both validation runs
        widths=(96, 256, 512),  # docs/results.md "Tuning cpu": in bfloat16, +0.8 (TTA) on validation over 64/160/320
        size="auto",  # M where it fits 30 minutes (a run times the sizes first); M when notebooks run by hand
        minutes=30.0,  # the study's promise: 10 epochs in 30 minutes of training on two cores
        bn_momentum=0.6,
        tta="flip_translate",
        val_fraction=0.0,  # all 50,000 images; tune holds out 5,000 (tune.HOLDOUT)
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
        weight_decay=1e-2,  # carried over from cpu (docs/results.md "Tuning cpu"); not yet measured on a GPU
        label_smoothing=0.1,  # carried over from cpu (docs/results.md "Tuning cpu"); not yet measured on a GPU
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


def resolve_recipe(name: str) -> str:
    """``auto`` picks the recipe for this machine: ``transfer`` with a GPU or TPU, ``cpu`` without."""
    if name != "auto":
        return name
    return "transfer" if machine.accelerator_present() else "cpu"


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
    if isinstance(overrides.get("widths"), list):
        overrides["widths"] = tuple(overrides["widths"])
    if "widths" in overrides and "size" not in overrides:
        overrides["size"] = ""  # widths given: they are trained as given
    if overrides.get("size") in SIZES and "widths" not in overrides:
        overrides["widths"] = SIZES[overrides["size"]]
    cfg = dataclasses.replace(RECIPES[name], **overrides)
    validate(cfg)
    return cfg


RETIRED = {"alternating_flip": False, "dirac": False, "bias_lr_scale": 1.0, "muon_learning_rate": 0.0,
           "residual": False, "clean_epochs": 0}  # fmt: skip
# options measured, dropped and removed (on 2026-12-03; the last two on 2026-12-04; docs/recipes.md): a saved
# config.json at these values still loads


def without_retired(saved: dict) -> dict:
    """A saved config's fields without the retired options it holds at their old defaults; one switched on (or
    the retired optimizer "muon") is refused: this version cannot train that run."""
    on = [f"{k}={v!r}" for k, v in saved.items() if k in RETIRED and v != RETIRED[k]]
    on += ["optimizer='muon'"] if saved.get("optimizer") == "muon" else []
    if on:
        raise ConfigError(f"{', '.join(on)}: retired options (docs/recipes.md), which this version cannot train.")
    return {k: v for k, v in saved.items() if k not in RETIRED}


def from_parameters(recipe: str, data=None, verify=None, epochs=None, seed=0, overrides=None) -> RunConfig:
    """The config a notebook's ``parameters`` cell describes; None keeps the recipe's value."""
    given = {"data": data, "verify": verify, "epochs": epochs}
    return make_config(recipe, seed=seed, **{k: v for k, v in given.items() if v is not None}, **(overrides or {}))


RANGES = {  # the interval each number (each element of a list) must lie in; "epochs" stands for cfg.epochs
    "epochs": f"[1, {MAX_EPOCHS}]", "batch_size": "[1, inf)", "max_global_batch": "[1, inf)",
    "learning_rate": "(0, inf)", "momentum": "[0, 1)", "weight_decay": "[0, inf)",
    "warmup_epochs": "[0, epochs]", "label_smoothing": "[0, 1)",
    "crop_pad": "[0, inf)", "crop_scale": "[0, 1)", "randaugment": "[0, 1]", "mixup": "[0, inf)",
    "cutmix": "[0, inf)", "ema": "[0, 1)", "widths": "[1, inf)", "bn_momentum": "[0, 1)",
    "image_size": "[16, inf)",
    "start_size": "[0, inf)", "dropout": "[0, 1)", "head_filters": "[0, inf)", "head_units": "[0, inf)",
    "val_fraction": "[0, 0.5)", "minutes": "[0, inf)", "seed": "[0, 2147483648)",
}  # fmt: skip
CHOICES = {
    "recipe": tuple(RECIPES), "model": ("airbench", "seed", "transfer"),  # models.BUILDERS
    "optimizer": ("sgd", "adamw", "rmsprop"), "schedule": ("cosine", "constant"), "tta": TTA_MODES,
    "size": ("", "auto", *SIZES),
}  # fmt: skip
KINDS = {bool: "True or False", int: "a whole number", float: "a finite number", str: "a string"}
FLAGS = {"epochs": "--epochs N", "seed": "--seed N", "data": "--data PATH", "weights": "--weights PATH",
         "minutes": "--minutes M", "size": "--size NAME"}  # fmt: skip


def conforms(value, hint) -> bool:
    """Whether ``value`` has the type a RunConfig field declares (bools are not numbers, floats are finite)."""
    if typing.get_origin(hint) is tuple:
        return isinstance(value, tuple) and all(conforms(v, typing.get_args(hint)[0]) for v in value)
    if typing.get_args(hint):  # X | None
        return any(conforms(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if isinstance(value, bool):
        return hint is bool
    if hint is float:
        return isinstance(value, int | float) and math.isfinite(value)
    return isinstance(value, hint)


def in_interval(value: float, interval: str) -> bool:
    low, high = (float(v) for v in interval[1:-1].split(", "))
    above = value >= low if interval[0] == "[" else value > low
    return above and (value <= high if interval[-1] == "]" else value < high)


def describe_type(hint) -> str:
    if typing.get_origin(hint) is tuple:
        return "a list of whole numbers, e.g. [64,128,256]"
    return " or ".join("None" if h is type(None) else KINDS[h] for h in typing.get_args(hint) or (hint,))


def check_fields(cfg: RunConfig) -> None:
    """Every field has its declared type, lies in its range (RANGES) and, for names, in its set (CHOICES)."""
    for name, hint in typing.get_type_hints(RunConfig).items():
        value, fix = getattr(cfg, name), FLAGS.get(name, f"--set {name}=...")
        if not conforms(value, hint):
            raise ConfigError(f"{name} must be {describe_type(hint)}, got {value!r} ({fix}).")
        if name in CHOICES and value not in CHOICES[name]:
            raise ConfigError(f"{name} must be one of {', '.join(CHOICES[name])}, got {value!r} ({fix}).")
        interval = RANGES.get(name, "").replace("epochs", str(cfg.epochs))
        for number in (value if isinstance(value, tuple) else (value,)) if interval else ():
            if not in_interval(number, interval):
                what = f"each of {name}" if isinstance(value, tuple) else name
                raise ConfigError(f"{what} must lie in {interval}, got {value!r} ({fix}).")


def validate(cfg: RunConfig) -> None:
    """Refuse, in one line naming the field and the fix, any config a run would fail on later."""
    check_fields(cfg)
    if cfg.over_budget and not cfg.allow_over_budget:
        raise BudgetError(
            f"epochs={cfg.epochs} breaks the study's {EPOCH_BUDGET}-epoch budget. Use --epochs {EPOCH_BUDGET} "
            "or fewer, or pass --allow-over-budget (the report will flag the run)."
        )
    if cfg.size and cfg.model != "airbench":
        raise ConfigError(f"size {cfg.size!r} names a size of the airbench network; model {cfg.model} has none "
                          "(drop --size).")  # fmt: skip
    if cfg.size in SIZES and cfg.widths != SIZES[cfg.size]:
        raise ConfigError(f"size {cfg.size} has widths {list(SIZES[cfg.size])}, not {list(cfg.widths)}: give one of "
                          "--size or --set widths=[...].")  # fmt: skip
    if cfg.size == "auto" and not cfg.minutes:
        raise ConfigError("size auto chooses the size that fits a time budget: give one (--minutes 30), or a size "
                          f"(--size {'/'.join(SIZES)}).")  # fmt: skip
    if cfg.model == "airbench" and not cfg.widths:
        raise ConfigError("widths must list at least one width for the airbench model (--set widths=[64,128,256]).")
    if cfg.model == "airbench" and cfg.weights is not None:
        raise ConfigError(
            f"recipe {cfg.recipe} (the airbench model) has no pretrained weights: drop --weights "
            f"(got {cfg.weights!r}); pretrained weights are for the seed and transfer recipes."
        )
    if cfg.generated and cfg.data is not None:
        raise ConfigError(
            f"recipe {cfg.recipe} trains on generated data, so --data {cfg.data} would be ignored: "
            "drop --data, or choose a recipe that reads CIFAR-100 (--recipe cpu)."
        )
    if cfg.model in ("transfer", "seed"):
        if (cfg.backbone or cfg.model == "transfer") and cfg.backbone not in BACKBONE_NAMES:
            raise ConfigError(f"Unknown backbone '{cfg.backbone}'. Valid: {', '.join(BACKBONE_NAMES)}.")
        if cfg.image_size < 32:
            raise ConfigError(
                f"image size {cfg.image_size} is too small for {cfg.backbone or SEED_BACKBONE}: "
                "use at least 32 (--set image_size=224)."
            )
        if cfg.model == "seed" and not (cfg.head_filters and cfg.head_units):
            raise ConfigError("the seed head needs head_filters and head_units of at least 1 (--set head_units=256).")
    if cfg.start_size and not 16 <= cfg.start_size <= cfg.image_size:
        raise ConfigError(f"start_size {cfg.start_size} must be between 16 and image_size {cfg.image_size}.")
