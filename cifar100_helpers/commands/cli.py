"""Command line: ``python -m cifar100_helpers run|compare|bench|gpu-check|predict|export|sweep|tune``.
Mistakes print one line, not a traceback."""

from __future__ import annotations

import argparse
import ast
import errno
import json
import logging
import math
import os
import sys
import time
from pathlib import Path

from ..config import RECIPE_NAMES, SIZES, resolve_recipe
from ..errors import Cifar100Error, ConfigError, Interrupted, OutputError
from ..files import writing
from ..running.jupyter_kernel import end_with_parent_if_asked, terminate_as_interrupt
from ..running.run_dir import check_output

BENCH_RECIPES = [r for r in RECIPE_NAMES if r not in ("auto", "smoke")]  # bench's default; smoke only when named
PATH_OPTIONS = {"run_dir": "RUN_DIR", "images": "IMAGE", "data": "--data", "weights": "--weights",
                "notebooks": "--notebooks", "outputs": "--outputs", "resume": "--resume",
                "output": "--output"}  # fmt: skip
IGNORED_BY_RESUME = ("recipe", "output", "data", "no_verify", "epochs", "seed", "weights", "allow_over_budget",
                     "deterministic", "float32", "set", "minutes", "size")  # fmt: skip


def parse_setting(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        empty = " (its KEY is empty)" if sep else ""
        raise ConfigError(f"--set expects KEY=VALUE, got '{text}'{empty}: e.g. --set batch_size=128.")
    try:
        return key.strip(), ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key.strip(), value


def path_argument(text: str) -> Path | str:
    """A path option's value; an empty one stays "" for :func:`refuse_empty_paths` (Path("") would be ".", the
    current folder: ``--output ""`` wrote into it or into the default)."""
    return Path(text) if text.strip() else ""


def refuse_empty_paths(args: argparse.Namespace) -> None:
    """One line for a path option given as an empty string (``--output ""``), before any work (RUN_DIR and IMAGE
    are predict's and export's to check)."""
    for name, flag in PATH_OPTIONS.items():
        empty = any(isinstance(v, str) and not v.strip() for v in always_list(getattr(args, name, None)))
        if empty and flag.startswith("--"):
            raise ConfigError(f"{flag} is empty: give a path, or leave {flag} out for its default.")


def positive_number(value: float, flag: str) -> float:
    """``value`` if it is a finite number above 0, else one line naming ``flag`` (argparse's float takes nan)."""
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{flag} must be a finite number above 0, got {value:g}: e.g. {flag} 1700.")
    return value


def positive_int(text: str) -> int:
    value = int(text) if text.lstrip("-").isdigit() else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expects a whole number of at least 1, got {text!r}")
    return value


def add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="cifar-100-python.tar.gz or its extracted folder (default: $CIFAR100_DATA, "
                        "the Keras cache, then the official download)")  # fmt: skip
    parser.add_argument("--no-verify", action="store_true", help="skip the official sha256 check (your own copy)")


def add_float32_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--float32", action="store_true", help="train in float32 where the hardware would use mixed "
                        "precision (bfloat16 on CPUs with AVX512_BF16/AMX and TPUs, float16 on GPUs); same as "
                        "--set mixed_precision=False")  # fmt: skip


def add_budget_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--minutes", type=float, help="training-time budget in minutes (cpu: 30): before training, "
                        "the run times its network's sizes here and trains the largest that fits")  # fmt: skip
    parser.add_argument("--size", choices=list(SIZES), help="train this size of the cpu network, untimed (XXXS ... M: "
                        "widths 32/80/160 ... 96/256/512); --set widths=[...] for others")  # fmt: skip


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m cifar100_helpers", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="execute notebooks 01-04 into a new run directory")
    run.add_argument("--recipe", help=f"one of {', '.join(RECIPE_NAMES)} (default: auto)")
    run.add_argument("--output", help="new run directory (default: outputs/<recipe>-<date>-<time>)")
    run.add_argument("--resume", metavar="RUN_DIR", type=path_argument,
                     help="continue an interrupted run in RUN_DIR (its saved config is used)")  # fmt: skip
    run.add_argument("--deterministic", action="store_true",
                     help="bit-for-bit repeatable on CPU (seeds and op determinism; slower)")  # fmt: skip
    add_float32_option(run)
    add_budget_options(run)
    add_data_options(run)
    run.add_argument("--epochs", type=int, help="epochs to train (the recipe's value by default; at most 10)")
    run.add_argument("--seed", type=int, help="random seed (default 0)")
    run.add_argument(
        "--weights", help="pretrained weights: 'imagenet' (default of seed/transfer), a local file, or None"
    )
    run.add_argument("--allow-over-budget", action="store_true", help="permit more than 10 epochs (flagged)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="any other config field, e.g. --set batch_size=128 (repeatable)")  # fmt: skip
    run.add_argument("--notebooks", type=path_argument, help="folder holding 01_data.ipynb ... (default: the repo's)")

    compare = commands.add_parser("compare", help="leaderboard of every run (notebook 05) and outputs/index.html")
    compare.add_argument("--outputs", type=path_argument, default=Path("outputs"), help="folder of run directories")
    compare.add_argument("--include-unranked", action="store_true",
                         help="also list runs over budget or on generated data (never ranked)")  # fmt: skip
    compare.add_argument("--notebooks", type=path_argument,
                         help="folder holding 05_compare.ipynb (default: the repo's)")  # fmt: skip

    bench = commands.add_parser("bench", help="training images/second of each recipe and of the input pipeline")
    bench.add_argument("--recipes", nargs="+", choices=[*BENCH_RECIPES, "smoke"], help="default: all but smoke; "
                       "without GPU or TPU also not seed and transfer, which take many minutes there")  # fmt: skip
    add_data_options(bench)
    bench.add_argument("--steps", type=positive_int, default=30,
                       help="steps timed per recipe, after 5 warm-up steps of the same fit (>= 1)")  # fmt: skip
    bench.add_argument("--gpu-images-per-second", type=float, default=1700,
                       help="a GPU's training throughput, to print how many CPU cores each input pipeline needs to "
                       "feed it (default 1700: an estimate for EfficientNetV2-S at 224 px on one A100)")  # fmt: skip
    bench.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="change a setting of every recipe benched (e.g. --set mixed_precision=False)")  # fmt: skip
    bench.add_argument("--output", type=path_argument, default=Path("outputs/bench.json"))

    gpu = commands.add_parser("gpu-check", help="on a GPU machine: bench every recipe and a short real-data "
                              "transfer run, into one JSON with the hardware")  # fmt: skip
    add_data_options(gpu)
    gpu.add_argument("--weights", help="ImageNet weights file for transfer (default: Keras's cache or download)")
    gpu.add_argument("--epochs", type=positive_int, default=2, help="epochs of the transfer run (default 2)")
    gpu.add_argument("--output", type=path_argument, help="JSON file (default: outputs/gpu-check-<date>-<time>.json)")
    add_model_commands(commands)
    add_sweep_command(commands)
    add_tune_command(commands)
    return top


def add_tune_command(commands) -> None:
    """``tune``: judge a recipe change on the validation split (tune.py)."""
    tune = commands.add_parser(
        "tune", help="train a recipe (with --set changes) and score it on the validation split only",
        description="Train exactly as a run does, then print validation top-1 for each test-time augmentation and "
        "the training minutes, into OUTPUT/validation.json. The test split is never read: use it to choose "
        "recipe changes.",
    )  # fmt: skip
    tune.add_argument("--recipe", help=f"one of {', '.join(RECIPE_NAMES)} (default: auto)")
    tune.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="a config change to judge, e.g. --set widths=[64,160,320] (repeatable)")  # fmt: skip
    add_float32_option(tune)
    add_budget_options(tune)
    add_data_options(tune)
    tune.add_argument("--seed", type=int, help="random seed (default 0)")
    tune.add_argument("--output", type=path_argument, help="folder (default: outputs/tuning/<recipe>-<date>-<time>); "
                      "an existing one continues its training")  # fmt: skip
    tune.set_defaults(epochs=None, weights=None, allow_over_budget=False, deterministic=False)


def add_sweep_command(commands) -> None:
    """``sweep``: a grid of ordinary runs on Ray (sweep.py)."""
    sweep = commands.add_parser(
        "sweep", help="a grid of runs (recipes x --set values x seeds) on Ray, with sweep.json and index.html",
        description="Run every combination of --recipes, each --set's values and --seeds as an ordinary run "
        "(python -m cifar100_helpers run, its own process) in the sweep folder, scheduled by Ray: a local Ray by "
        "default, or a running cluster with --address. Needs Ray: pip install -e .[sweep]",
    )  # fmt: skip
    sweep.add_argument("--recipes", nargs="+", metavar="RECIPE", help=f"any of {', '.join(RECIPE_NAMES)}")
    sweep.add_argument("--seeds", nargs="+", type=int, metavar="N", help="random seeds (default: 0)")
    sweep.add_argument("--set", action="append", default=[], metavar="KEY=V1,V2",
                       help="a config field and its values, e.g. --set learning_rate=0.1,0.2 (repeatable; commas "
                       "inside brackets stay in one value: --set widths=[8,16],[16,32])")  # fmt: skip
    add_data_options(sweep)
    sweep.add_argument("--epochs", type=positive_int, help="epochs of every run (the recipe's value by default)")
    sweep.add_argument("--output", type=path_argument, help="new sweep folder (default: outputs/sweep-<date>-<time>)")
    sweep.add_argument("--resume", metavar="SWEEP_DIR", type=path_argument,
                       help="continue a sweep: completed runs kept, partial ones resumed, others started")  # fmt: skip
    sweep.add_argument("--slots", type=positive_int, default=1, help="runs at the same time (default 1)")
    sweep.add_argument("--address", help="join a running Ray cluster (ray start --head) at HOST:PORT; default: "
                       "a local Ray of --slots CPUs")  # fmt: skip


def top_count(text: str) -> int:
    value = int(text) if text.isdigit() else 0
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"expects a whole number from 1 to 100, got {text!r}")
    return value


def add_model_commands(commands) -> None:
    """``predict`` and ``export``: use a finished run's model.keras."""
    formatter = argparse.RawDescriptionHelpFormatter
    predict = commands.add_parser(
        "predict", help="classify your own images with a finished run's model", formatter_class=formatter,
        description="Classify images with RUN_DIR's model.keras and the run's own test-time augmentation (tta in "
        "its config.json).\nEach image (JPEG, PNG or anything Pillow reads; any size; RGB, RGBA, grey or palette) "
        "is turned upright by its\nEXIF orientation, converted to RGB (transparency onto white), cut to its central "
        "square and resized to\n32x32 by area averaging (Pillow's BOX filter: each pixel the mean of the pixels it "
        "covers; bicubic for\nimages under 32 pixels). Prints, per image, the top classes with probabilities and "
        "the superclass of the\ntop class.",
    )  # fmt: skip
    predict.add_argument("run_dir", metavar="RUN_DIR", help="a finished run directory (has model.keras)")  # "" kept
    predict.add_argument("images", nargs="+", metavar="IMAGE",
                         help="image files, or folders of them (not recursive; other files skipped)")  # fmt: skip
    predict.add_argument("--top", type=top_count, default=5, help="classes listed per image (1-100, default 5)")
    predict.add_argument("--squash", action="store_true",
                         help="resize the whole image to 32x32, not its central square (distorts it)")  # fmt: skip
    predict.add_argument("--json", action="store_true", help="print JSON (for scripts) instead of text")

    export = commands.add_parser(
        "export", help="write a run's model as a TensorFlow SavedModel, a LiteRT .tflite or an .onnx file",
        formatter_class=formatter,
        description="Export RUN_DIR's model.keras with Keras's model.export (tf_saved_model, litert, onnx), then "
        "reload the\nartifact with its runtime and check that its outputs equal the Keras model's.\n\n"
        "Input:  float32 images, shape (N, 32, 32, 3), RGB pixel values 0-255 (not rescaled; the model does it).\n"
        "Output: float32 (N, 100) softmax probabilities in CIFAR-100's fine-label order (apple ... worm).\n"
        "The run's test-time augmentation is not inside: for flip TTA, average the outputs on x and x[:, :, ::-1]."
        "\nA model trained with mixed precision is exported in float32.\n\n"
        "onnx needs tf2onnx and onnx, the checks need onnxruntime and ai-edge-litert: pip install -e .[export]",
    )  # fmt: skip
    export.add_argument("run_dir", type=path_argument, metavar="RUN_DIR",
                        help="a finished run directory (has model.keras)")  # fmt: skip
    export.add_argument("--format", required=True, choices=["savedmodel", "tflite", "onnx"],
                        help="savedmodel: a folder (tf.saved_model.load(path).serve(x)); tflite: a .tflite file "
                        "(LiteRT); onnx: an .onnx file (onnxruntime)")  # fmt: skip
    export.add_argument("--output", type=path_argument, help="where to write (default: RUN_DIR/export/savedmodel, "
                        "RUN_DIR/export/model.tflite or RUN_DIR/export/model.onnx); never overwritten")  # fmt: skip


def config_from_args(args: argparse.Namespace):
    from ..config import from_parameters

    overrides = dict(parse_setting(s) for s in args.set)
    if "recipe" in overrides:
        raise ConfigError(f"choose the recipe with --recipe {overrides['recipe']}, not --set recipe=...")
    if args.weights:
        overrides["weights"] = None if args.weights == "None" else args.weights
    if args.allow_over_budget:
        overrides["allow_over_budget"] = True
    if args.deterministic:
        overrides["deterministic"] = True
    if args.float32:
        overrides["mixed_precision"] = False
    if getattr(args, "minutes", None) is not None:
        overrides["minutes"] = args.minutes
    if getattr(args, "size", None):
        overrides["size"] = args.size
    cfg = from_parameters(
        args.recipe or "auto", data=args.data, verify=False if args.no_verify else None, epochs=args.epochs,
        seed=args.seed or 0, overrides=overrides,
    )  # fmt: skip
    if "minutes" in overrides and cfg.size != "auto":
        reason = f"size {cfg.size} is given" if cfg.size else f"recipe {cfg.recipe} has no named sizes"
        raise ConfigError(f"--minutes chooses the size of the cpu network that fits, but {reason}: drop --minutes.")
    return cfg


def given(value) -> bool:
    """Whether an option was typed: its default is None, False or [] (an explicit 0 counts)."""
    return value is not None and value is not False and value != []


def run_command(args: argparse.Namespace) -> None:
    from ..running import notebook_runner

    notebooks = {"notebook_dir": args.notebooks} if args.notebooks else {}
    ignored = [f"--{n.replace('_', '-')}" for n in IGNORED_BY_RESUME if given(getattr(args, n))]
    if args.resume and ignored:
        raise ConfigError(
            f"--resume continues a run with its saved config, so {', '.join(ignored)} would be ignored: drop "
            f"{'it' if len(ignored) == 1 else 'them'}, or start a new run with --output NAME."
        )
    recipe = args.recipe or "auto"
    path = args.resume or Path(args.output or f"outputs/{resolve_recipe(recipe)}-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        if args.resume:
            done = notebook_runner.resume(path, **notebooks)
        else:
            done = notebook_runner.run(config_from_args(args), check_output(path, folder=True), **notebooks)
    except KeyboardInterrupt:
        if (path / "run.json").exists():
            raise Interrupted(f"finished notebooks and epochs are kept; continue with --resume {path}") from None
        raise Interrupted("nothing was written; run the command again") from None
    print(f"Report: {done.report}\nManifest: {done.manifest}")


def compare_command(args: argparse.Namespace) -> None:
    from ..running import notebook_runner

    notebooks = {"notebook_dir": args.notebooks} if args.notebooks else {}
    with writing("then run compare again (the runs are only read)", args.outputs / "compare"):
        report = notebook_runner.compare(args.outputs, args.include_unranked, **notebooks)
    print(f"Leaderboard: {report}\nIndex: {args.outputs / 'index.html'}")


def sweep_command(args: argparse.Namespace) -> None:
    from . import sweep

    sweep.require_ray(args.address)
    grid = ("recipes", "seeds", "set", "data", "no_verify", "epochs", "output")
    ignored = [f"--{n.replace('_', '-')}" for n in grid if given(getattr(args, n))]
    if args.resume and ignored:
        raise ConfigError(f"sweep --resume continues a sweep with its saved grid, so {', '.join(ignored)} would be "
                          "ignored: drop them, or start a new sweep with --output NAME.")  # fmt: skip
    if args.resume:
        done = sweep.resume(args.resume, args.slots, args.address)
    elif not args.recipes:
        raise ConfigError("sweep needs --recipes (e.g. --recipes cpu scratch), or --resume SWEEP_DIR.")
    else:
        output = check_output(args.output or f"outputs/sweep-{time.strftime('%Y%m%d-%H%M%S')}", folder=True)
        settings = [sweep.split_values(s) for s in args.set]
        done = sweep.start(output, args.recipes, settings, args.seeds or [0], args.data, args.no_verify, args.epochs,
                           args.slots, args.address)  # fmt: skip
    print(sweep.summary(done))


def tune_command(args: argparse.Namespace) -> None:
    from . import tune

    cfg = config_from_args(args)
    output = check_output(args.output or f"outputs/tuning/{cfg.recipe}-{time.strftime('%Y%m%d-%H%M%S')}", folder=True)
    result = tune.validate(cfg, output, dict(parse_setting(s) for s in args.set))
    print(json.dumps(result["val_top1"]), f"{result['training_minutes']} min of training; {output}/validation.json")


def bench_command(args: argparse.Namespace) -> None:
    gpu_images_per_second = positive_number(args.gpu_images_per_second, "--gpu-images-per-second")
    output = check_output(args.output, folder=False)
    overrides = dict(parse_setting(s) for s in args.set)
    from ..machine import accelerator_present
    from . import bench  # TensorFlow: after the checks, which answer at once

    recipes, notes = bench.choose(args.recipes, BENCH_RECIPES, accelerator_present())
    for note in notes:
        print(f"note: {note}", flush=True)
    result = bench.run(recipes, bench.load_bench_data(args.data, not args.no_verify), args.steps, 5, overrides)
    print(bench.table(result, gpu_images_per_second))
    try:
        bench.save(result, output)
    except OSError as exc:
        raise OutputError(f"Could not save {output} ({exc.strerror}): the table above is the result.") from None
    print(f"Saved {output}")


def gpu_check_command(args: argparse.Namespace) -> None:
    from . import gpu_check

    output = check_output(args.output or f"outputs/gpu-check-{time.strftime('%Y%m%d-%H%M%S')}.json", folder=False)
    data_args = [*(["--data", args.data] if args.data else []), *(["--no-verify"] if args.no_verify else [])]
    result = gpu_check.run(output, data_args, ["--weights", args.weights] if args.weights else [], epochs=args.epochs)
    failed = [s["command"] for s in (result["bench_step"], result["run_step"]) if s["exit_code"]]
    print(f"Saved {output}" + (f"; failed: {', '.join(failed)} (logs beside it)" if failed else ""))


def predict_command(args: argparse.Namespace) -> None:
    from . import predict

    crop = not args.squash
    predictions, notes, tta = predict.predict_files(args.run_dir, args.images, top=args.top, crop=crop)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        print(predict.as_json(predictions, args.run_dir, tta, notes, crop=crop))
    else:
        print(predict.report(predictions, args.run_dir, tta, crop=crop))


def export_command(args: argparse.Namespace) -> None:
    from . import export

    if not str(args.run_dir).strip():  # Path("") would be ".", the current folder
        raise ConfigError("RUN_DIR is empty: give the run directory to export, e.g. outputs/NAME.")
    print(export.export(args.run_dir, args.format, args.output).summary())


def too_long(exc: OSError, args: argparse.Namespace) -> str:
    """The line for a path the system refused as too long, naming the option it came from. Outputs are checked
    before any work (run_dir.check_output); this catches the paths a command only reads."""
    path = Path(os.path.abspath(exc.filename))
    given = [flag for name, flag in PATH_OPTIONS.items() for value in always_list(getattr(args, name, None))
             if value and path.is_relative_to(os.path.abspath(value))]  # fmt: skip
    return (
        f"{given[0] if given else 'a path'} {path}: {exc.strerror} (names hold at most 255 bytes on most "
        "file systems): choose a shorter one."
    )


def always_list(value) -> list:
    return value if isinstance(value, list) else [value]


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    terminate_as_interrupt()
    end_with_parent_if_asked()
    try:
        refuse_empty_paths(args)
        commands = {"run": run_command, "compare": compare_command, "bench": bench_command}
        commands["gpu-check"] = gpu_check_command
        commands |= {"predict": predict_command, "export": export_command, "sweep": sweep_command, "tune": tune_command}
        commands[args.command](args)
    except Cifar100Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG or not exc.filename:  # anything else is not a mistyped path: traceback
            raise
        print(f"error: {too_long(exc, args)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Interrupted (run) says how to continue; bench and compare just stop
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # no "Task exception was never retrieved" at exit
        print(f"interrupted: {exc}." if isinstance(exc, Interrupted) else "interrupted.", file=sys.stderr)
        return 130
    return 0
