"""Command line: ``python -m cifar100_helpers run|compare|bench``. Mistakes print one line, not a traceback."""

from __future__ import annotations

import argparse
import ast
import sys
import time
from pathlib import Path

from .config import RECIPE_NAMES, resolve_recipe
from .errors import Cifar100Error, ConfigError

BENCH_RECIPES = [r for r in RECIPE_NAMES if r not in ("auto", "smoke")]


def parse_setting(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep:
        raise ConfigError(f"--set expects KEY=VALUE, got '{text}' (e.g. --set batch_size=128).")
    try:
        return key.strip(), ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key.strip(), value


def positive_int(text: str) -> int:
    value = int(text) if text.lstrip("-").isdigit() else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expects a whole number of at least 1, got {text!r}")
    return value


def add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="cifar-100-python.tar.gz or its extracted folder (default: $CIFAR100_DATA, "
                        "the Keras cache, then the official download)")  # fmt: skip
    parser.add_argument("--no-verify", action="store_true", help="skip the official sha256 check (your own copy)")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m cifar100_helpers", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="execute notebooks 01-04 into a new run directory")
    run.add_argument("--recipe", default="auto", help=f"one of {', '.join(RECIPE_NAMES)} (default: auto)")
    run.add_argument("--output", help="new run directory (default: outputs/<recipe>-<date>-<time>)")
    run.add_argument("--resume", metavar="RUN_DIR", type=Path,
                     help="continue an interrupted run in RUN_DIR (its saved config is used)")  # fmt: skip
    run.add_argument("--deterministic", action="store_true",
                     help="bit-for-bit repeatable on CPU (seeds and op determinism; slower)")  # fmt: skip
    add_data_options(run)
    run.add_argument("--epochs", type=int, help="epochs to train (the recipe's value by default; at most 10)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument(
        "--weights", help="pretrained weights: 'imagenet' (default of seed/transfer), a local file, or None"
    )
    run.add_argument("--allow-over-budget", action="store_true", help="permit more than 10 epochs (flagged)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="any other config field, e.g. --set batch_size=128 (repeatable)")  # fmt: skip
    run.add_argument("--notebooks", type=Path, help="folder holding 01_data.ipynb ... (default: the repo's)")

    compare = commands.add_parser("compare", help="leaderboard of every run (notebook 05) and outputs/index.html")
    compare.add_argument("--outputs", type=Path, default=Path("outputs"), help="folder of run directories")
    compare.add_argument("--include-unranked", action="store_true",
                         help="also list runs over budget or on generated data (never ranked)")  # fmt: skip
    compare.add_argument("--notebooks", type=Path, help="folder holding 05_compare.ipynb (default: the repo's)")

    bench = commands.add_parser("bench", help="training images/second of each recipe and of the input pipeline")
    bench.add_argument("--recipes", nargs="+", default=BENCH_RECIPES, choices=BENCH_RECIPES)
    add_data_options(bench)
    bench.add_argument("--steps", type=positive_int, default=10, help="timed training steps per recipe (>= 1)")
    bench.add_argument("--gpu-images-per-second", type=float, default=1700,
                       help="a GPU's training throughput, to print how many CPU cores each input pipeline needs to "
                       "feed it (default 1700: an estimate for EfficientNetV2-S at 224 px on one A100)")  # fmt: skip
    bench.add_argument("--output", type=Path, default=Path("outputs/bench.json"))
    return top


def config_from_args(args: argparse.Namespace):
    from .config import from_parameters

    overrides = dict(parse_setting(s) for s in args.set)
    if args.weights:
        overrides["weights"] = None if args.weights == "None" else args.weights
    if args.allow_over_budget:
        overrides["allow_over_budget"] = True
    if args.deterministic:
        overrides["deterministic"] = True
    return from_parameters(
        args.recipe, data=args.data, verify=False if args.no_verify else None, epochs=args.epochs,
        seed=args.seed, overrides=overrides,
    )  # fmt: skip


def run_command(args: argparse.Namespace) -> None:
    from . import pipeline

    notebooks = {"notebook_dir": args.notebooks} if args.notebooks else {}
    if args.resume:
        done = pipeline.resume(args.resume, **notebooks)
    else:
        output = Path(args.output or f"outputs/{resolve_recipe(args.recipe)}-{time.strftime('%Y%m%d-%H%M%S')}")
        done = pipeline.run(config_from_args(args), output, **notebooks)
    print(f"Report: {done.report}\nManifest: {done.manifest}")


def compare_command(args: argparse.Namespace) -> None:
    from . import pipeline

    notebooks = {"notebook_dir": args.notebooks} if args.notebooks else {}
    report = pipeline.compare(args.outputs, args.include_unranked, **notebooks)
    print(f"Leaderboard: {report}\nIndex: {args.outputs / 'index.html'}")


def bench_command(args: argparse.Namespace) -> None:
    from . import bench

    result = bench.run(args.recipes, bench.load_bench_data(args.data, not args.no_verify), steps=args.steps)
    bench.save(result, args.output)
    print(bench.table(result, args.gpu_images_per_second))
    print(f"Saved {args.output}")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        {"run": run_command, "compare": compare_command, "bench": bench_command}[args.command](args)
    except Cifar100Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished epochs are kept; continue with --resume RUN_DIR.", file=sys.stderr)
        return 130
    return 0
