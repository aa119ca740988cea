"""The `cpu` recipe's accuracy-per-minute ladder, from committed evidence: each rung's validation run
(outputs/tuning/<folder>/validation.json, bfloat16) and its training step timed in bfloat16 and float32, one bench
after another (outputs/ladder/bench-<rung>-<precision>.json, `bench --set widths=[...] [--set mixed_precision=False]`).
Minutes are 10 epochs of the 50,000 training images at the benched speed (this VM's full speed; its slow spells run
at about 0.65x). Writes docs/figures/cpu_ladder.png and prints the Markdown table of docs/results.md.

    python docs/ladder.py            # from the repository root, after the runs and benches below
"""

import json
import sys
from pathlib import Path

from cifar100_helpers import plots

REPO = Path(__file__).resolve().parent.parent
OUTPUTS = REPO / "outputs"
RUNGS = [  # name, widths, validation run
    ("XS", (48, 128, 256), "cpu-bf16-w48-128-256"),
    ("S", (64, 160, 320), "cpu-bf16"),
    ("M", (96, 256, 512), "cpu-bf16-w96-256-512"),
]
IMAGES = 10 * 50_000  # a run of the recipe: 10 epochs of all training images


def images_per_second(rung: str, precision: str) -> float:
    bench = json.loads((OUTPUTS / "ladder" / f"bench-{rung}-{precision}.json").read_text())
    return bench["recipes"][0]["train_images_per_second"]


def rung(name: str, widths: tuple, folder: str) -> dict:
    scores = json.loads((OUTPUTS / "tuning" / folder / "validation.json").read_text())
    bf16, float32 = images_per_second(name, "bfloat16"), images_per_second(name, "float32")
    return {
        "name": name,
        "widths": "/".join(map(str, widths)),
        "minutes": IMAGES / bf16 / 60,
        "float32_minutes": IMAGES / float32 / 60,
        "tune_minutes": scores["training_minutes"],
        "top1": scores["val_top1"]["flip_translate"],
        "plain": scores["val_top1"]["none"],
        "folder": folder,
    }


def table(rungs: list[dict]) -> str:
    lines = [
        "| rung | `--set` | validation top-1: plain / flip + translate | training min, bfloat16 | training min, "
        "float32 (CPU without bfloat16) | its validation run's min | evidence |",
        "| --- | --- | --- | ---: | ---: | ---: | --- |",
    ]
    for r in rungs:
        lines.append(
            f"| {r['name']} | `widths=[{r['widths'].replace('/', ',')}]` | {100 * r['plain']:.2f}% / "
            f"{100 * r['top1']:.2f}% | {r['minutes']:.1f} | {r['float32_minutes']:.1f} | {r['tune_minutes']:.1f} | "
            f"[`{r['folder']}`](../outputs/tuning/{r['folder']}/validation.json) |"
        )
    return "\n".join(lines)


def main() -> int:
    rungs = [rung(*spec) for spec in RUNGS]
    plots.accuracy_ladder(rungs).savefig(REPO / "docs" / "figures" / "cpu_ladder.png", dpi=120)
    print(table(rungs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
