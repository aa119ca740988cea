"""The `cpu` recipe's accuracy-per-minute ladder, from committed evidence: each rung's validation run
(outputs/tuning/<folder>/: validation.json, config.json for its weight decay, run.json for the precision it trained
in) and its size's training step timed on the AMD EPYC with AVX512_BF16, in bfloat16 (no cap) and in float32
(`ONEDNN_MAX_CPU_ISA=AVX512_CORE`), one bench after another (outputs/ladder/isa-epyc/bench-<level>-<size>.json,
`bench --recipes cpu --set size=SIZE`). Minutes are 10 epochs of the 50,000 training images at the benched speed
(this VM's full speed; its slow spells run at about 0.65x). Writes docs/figures/cpu_ladder.png and prints the two
Markdown tables of docs/results.md: the ladder, and each size's minutes at each oneDNN instruction-set level.

Only measured points are drawn: accuracy is the validation split's (never the test split's), each in the precision it
was trained in, at that precision's minutes: bfloat16 for every size, float32 (trained on the AVX2-only EPYC, which
has no bfloat16) for the two smallest, the sizes a CPU without bfloat16 or AVX-512 can afford. A strip under the
accuracy panel gives every size's minutes in both precisions.

    .venv/bin/python docs/ladder.py  # from the repository root (the package installed), after the runs and benches
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from cifar100_helpers.config import MARGIN, RECIPES, SIZES  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
OUTPUTS = REPO / "outputs"
RUNGS = [  # size (its widths: config.SIZES), validation run: three sizes at weight decay 1e-2, then all five at 2e-2,
    # then the two smallest in float32
    ("XS", "cpu-bf16-w48-128-256"),
    ("S", "cpu-bf16"),
    ("M", "cpu-bf16-w96-256-512"),
    ("XXXS", "cpu-XXXS-wd2e-2"),
    ("XXS", "cpu-XXS-wd2e-2"),
    ("XS", "cpu-XS-wd2e-2"),
    ("S", "cpu-S-wd2e-2"),
    ("M", "cpu-bf16-w96-256-512-wd2e-2"),
    ("XXXS", "cpu-XXXS-float32-avx2"),
    ("XXS", "cpu-XXS-float32-avx2"),
]
IMAGES = 10 * 50_000  # a run of the recipe: 10 epochs of all training images
LIMIT = RECIPES["cpu"].minutes  # the study's promise on two cores; the budget picks a size whose minutes x MARGIN fit
BENCH = OUTPUTS / "ladder" / "isa-epyc"  # bench-<level>-<size>.json: ONEDNN_MAX_CPU_ISA on the AVX512_BF16 EPYC
LEVELS = {  # level: the column it heads
    "native": "AVX512_CORE_BF16 (no cap): bfloat16",
    "AVX512_CORE": "`ONEDNN_MAX_CPU_ISA=AVX512_CORE`: float32",
    "AVX2": "`ONEDNN_MAX_CPU_ISA=AVX2`: float32",
}


PRECISIONS = {"mixed_bfloat16": "bfloat16", "float32": "float32"}  # run.json's precision: as the ladder names it
LADDER_LEVELS = {"bfloat16": "native", "float32": "AVX512_CORE"}  # the ladder's two precisions: no cap, and float32
# with AVX-512 (a CPU without bfloat16)


def bench_row(level: str, size: str) -> dict:
    """The size's row of its bench under a level of LEVELS."""
    return json.loads((BENCH / f"bench-{level}-{size}.json").read_text())["recipes"][0]


def run_minutes(row: dict) -> float:
    """A full run's training minutes at a bench row's speed."""
    return IMAGES / row["train_images_per_second"] / 60


def rung(name: str, folder: str) -> dict:
    run = OUTPUTS / "tuning" / folder
    scores = json.loads((run / "validation.json").read_text())
    config = json.loads((run / "config.json").read_text())
    precision = json.loads((run / "run.json").read_text())["training"]["precision"]
    widths = SIZES[name]
    assert tuple(config["widths"]) == widths, f"{folder} trained widths {config['widths']}, not {widths}"
    return {
        "name": name,
        "widths": "/".join(map(str, widths)),
        "weight_decay": config["weight_decay"],
        "precision": precision,
        "minutes": run_minutes(bench_row(LADDER_LEVELS["bfloat16"], name)),
        "float32_minutes": run_minutes(bench_row(LADDER_LEVELS["float32"], name)),
        "tune_minutes": scores["training_minutes"],
        "top1": scores["val_top1"]["flip_translate"],
        "plain": scores["val_top1"]["none"],
        "folder": folder,
    }


def decay(value: float) -> str:
    """2e-2, 1e-2: weight decay as the docs write it."""
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e-{int(exponent[1:])}"


def table(rungs: list[dict]) -> str:
    lines = [
        "| rung | `--set` | weight decay | trained in | validation top-1: plain / flip + translate | training min, "
        "bfloat16 | training min, float32 with AVX-512 (a CPU without bfloat16) | its validation run's min | "
        "evidence |",
        "| --- | --- | --- | --- | --- | ---: | ---: | ---: | --- |",
    ]
    for r in rungs:
        lines.append(
            f"| {r['name']} | `widths=[{r['widths'].replace('/', ',')}]` | {decay(r['weight_decay'])} | "
            f"{PRECISIONS[r['precision']]} | "
            f"{100 * r['plain']:.2f}% / {100 * r['top1']:.2f}% | {r['minutes']:.1f} | {r['float32_minutes']:.1f} | "
            f"{r['tune_minutes']:.1f} | [`{r['folder']}`](../outputs/tuning/{r['folder']}/validation.json) |"
        )
    return "\n".join(lines)


def isa_table() -> str:
    """Each size's training minutes (10 epochs of 50,000 images) at each oneDNN instruction-set level, benched on one
    CPU, and the size the time budget picks at each (the largest whose minutes x MARGIN fit LIMIT)."""
    bench = {(level, size): bench_row(level, size) for level in LEVELS for size in SIZES}
    minutes = {key: run_minutes(row) for key, row in bench.items()}
    lines = [
        "| size | parameters | GFLOP per training image | " + " | ".join(LEVELS.values()) + " |",
        "| --- | ---: | ---: |" + " ---: |" * len(LEVELS),
    ]
    for size in SIZES:
        row = bench[("native", size)]
        cells = [f"{bench[(level, size)]['train_images_per_second']:.0f} images/s, {minutes[(level, size)]:.1f} min"
                 for level in LEVELS]  # fmt: skip
        lines.append(
            f"| {size} | {row['parameters']:,} | {row['training_gflop_per_image']:.3f} | {' | '.join(cells)} |"
        )
    fitting = {level: [size for size in SIZES if minutes[(level, size)] * MARGIN <= LIMIT] for level in LEVELS}
    picks = [fitting[level][-1] if fitting[level] else "none" for level in LEVELS]  # SIZES runs smallest first
    lines.append(f"| **the budget picks** | | | {' | '.join(f'**{p}**' for p in picks)} |")
    return "\n".join(lines)


def figure(rungs: list[dict]) -> plt.Figure:
    """Top: validation top-1 (flip + translate TTA) against minutes in the precision each rung trained in, one line
    per precision and weight decay. Bottom: a strip of minutes only, bfloat16 and float32, for each size."""
    fig, (top, strip) = plt.subplots(2, 1, figsize=(7.5, 5.6), sharex=True, gridspec_kw={"height_ratios": [4, 1.4]})
    series = sorted({(r["precision"], r["weight_decay"]) for r in rungs}, reverse=True)  # bfloat16 first
    for i, (precision, wd) in enumerate(series):
        these = [r for r in rungs if (r["precision"], r["weight_decay"]) == (precision, wd)]
        key = "minutes" if precision == "mixed_bfloat16" else "float32_minutes"
        label = f"{PRECISIONS[precision]}, weight decay {decay(wd)} ({', '.join(r['name'] for r in these)})"
        top.plot([r[key] for r in these], [100 * r["top1"] for r in these], ["o--", "D-", "s:"][i % 3],
                 color=["tab:blue", "tab:green", "tab:purple"][i % 3], ms=7, label=label)  # fmt: skip
        for r in these:
            top.annotate(r["name"], (r[key], 100 * r["top1"]), fontsize=8, xytext=[(6, -12), (-6, 5), (8, -4)][i % 3],
                         textcoords="offset points", ha=["left", "right", "left"][i % 3])  # fmt: skip
    top.set(ylabel="validation top-1 (%)\nflip + translate TTA",
            title="cpu sizes on the validation split (5,000 held-out images), not the test split\n"
                  "each at the minutes of the precision it trained in")  # fmt: skip
    top.margins(y=0.15)
    sizes = {r["name"]: r for r in rungs}.values()  # one entry per size for the minutes
    for y, key, style in ((1, "minutes", "o"), (0, "float32_minutes", "s")):
        strip.plot([r[key] for r in sizes], [y] * len(sizes), style, color="tab:gray", mfc="none" if y == 0 else None)
        for i, r in enumerate(sorted(sizes, key=lambda r: r[key])):  # neighbours' labels above and below: XXS, XS
            strip.annotate(r["name"], (r[key], y), fontsize=8, xytext=(0, [6, -12][i % 2]), textcoords="offset points",
                           ha="center")  # fmt: skip
    strip.set(yticks=[0, 1], yticklabels=["float32", "bfloat16"], ylim=(-0.8, 1.8),
              xlabel="training minutes: 10 epochs of 50,000 images, 2 cores (bench, AMD EPYC with "
                     "AVX512_BF16)")  # fmt: skip
    strip.set_title("training minutes only, per size (float32: ONEDNN_MAX_CPU_ISA=AVX512_CORE, as a CPU without "
                    "bfloat16)", fontsize=9)  # fmt: skip
    for ax in (top, strip):
        ax.axvline(LIMIT, color="tab:red", lw=1, ls=":", label=f"the {LIMIT:g}-minute limit")
        ax.grid(alpha=0.3)
    top.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def main() -> int:
    rungs = [rung(*spec) for spec in RUNGS]
    figure(rungs).savefig(REPO / "docs" / "figures" / "cpu_ladder.png", dpi=120)
    print(table(rungs), isa_table(), sep="\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
