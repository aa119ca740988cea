"""The documentation: every relative link in README.md, docs/ and outputs/README.md points at a file that exists and
that git does not ignore (so it exists in a fresh clone too), and at a heading of that file when it names one; the
README stays a first screen (at most 200 lines) with the headline `cpu` result, read from its evidence, in its first
40 lines; every sentence or row that presents something as the current `cpu` recipe agrees with config.py and the
committed evidence, and names nothing superseded (see "Docs held to the evidence" below)."""

import csv
import json
import re
import statistics
import subprocess
from pathlib import Path

import pytest

from .conftest import REPO

DOCS = sorted([REPO / "README.md", REPO / "outputs" / "README.md", *(REPO / "docs").rglob("*.md")])
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")  # [text](target) and ![alt](target)
FENCE = re.compile(r"^\s*(```|~~~)")
MAX_README_LINES = 200
HEADLINE_LINES = 40


def prose_lines(path: Path) -> list[str]:
    """The file's lines outside fenced code blocks, inline code replaced by a placeholder (a `[x](y)` inside code
    is not a link)."""
    lines, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(re.sub(r"`[^`]*`", "code", line))
    return lines


def links(path: Path) -> list[str]:
    return [target for line in prose_lines(path) for target in LINK.findall(line)]


def is_relative(target: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) and not target.startswith("//")


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, -1, -2, ... for repeats."""
    found, fenced = set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        fenced ^= bool(FENCE.match(line))
        heading = None if fenced else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            slug = unique = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
            repeat = 0
            while unique in found:  # a repeated heading gets -1, -2, ...
                repeat += 1
                unique = f"{slug}-{repeat}"
            found.add(unique)
    return found


def git_ignored(paths: list[Path]) -> set[Path]:
    """The paths git ignores (tracked files never count as ignored); empty outside a git checkout."""
    paths = [p for p in paths if p.is_relative_to(REPO.resolve())]
    try:
        result = subprocess.run(
            ["git", "check-ignore", "--stdin"], cwd=REPO, input="\n".join(str(p) for p in paths),
            capture_output=True, text=True, check=False,
        )  # fmt: skip
    except OSError:
        return set()
    return {Path(line) for line in result.stdout.splitlines()} if result.returncode in (0, 1) else set()


def resolved_links() -> list[tuple[Path, str, Path, str]]:
    """(document, link as written, target path, anchor) of every relative link."""
    found = []
    for doc in DOCS:
        for target in filter(is_relative, links(doc)):
            file, _, anchor = target.partition("#")
            found.append((doc, target, (doc.parent / file).resolve() if file else doc, anchor))
    return found


def test_the_docs_exist():
    names = {p.name for p in DOCS}
    assert {"README.md", "results.md", "troubleshooting.md", "development.md"} <= names


def test_every_relative_link_resolves_to_a_file_git_keeps():
    found = resolved_links()
    assert len(found) > 50, "the link scanner found almost nothing: is the pattern broken?"
    missing = [f"{d.relative_to(REPO)}: {t}" for d, t, p, _ in found if not p.exists()]
    assert not missing, "links to nothing:\n" + "\n".join(missing)
    ignored = git_ignored([p for _, _, p, _ in found])
    dropped = [f"{d.relative_to(REPO)}: {t}" for d, t, p, _ in found if p in ignored]
    assert not dropped, "links to files git ignores (absent from a fresh clone):\n" + "\n".join(dropped)


def test_every_anchor_names_a_heading():
    bad = [
        f"{d.relative_to(REPO)}: {t}" for d, t, p, a in resolved_links()
        if a and p.suffix == ".md" and a not in anchors(p)
    ]  # fmt: skip
    assert not bad, "anchors that name no heading:\n" + "\n".join(bad)


def test_readme_is_a_first_screen():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def headline_row() -> str:
    head = (REPO / "README.md").read_text(encoding="utf-8").splitlines()[:HEADLINE_LINES]
    rows = [line for line in head if line.startswith("| `cpu` |")]
    assert rows, f"no `cpu` row in the README's first {HEADLINE_LINES} lines"
    return rows[0]


def mean_std(values: list[float], digits: int) -> str:
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def test_readme_headline_is_the_evidence():
    """The `cpu` row in the first 40 lines links its sweep, and its mean ± std (with TTA, plain, training minutes)
    are those of that sweep's committed runs."""
    row = headline_row()
    sweep = re.search(r"\]\((outputs/[^)#]+)/sweep\.json\)", row)
    assert sweep, "the headline row should link its sweep's sweep.json"
    runs = sorted(p.parent for p in (REPO / sweep.group(1)).glob("*/metrics.json"))
    assert len(runs) >= 2, f"{sweep.group(1)} holds fewer than two runs"
    metrics = [json.loads((run / "metrics.json").read_text()) for run in runs]
    histories = [csv.DictReader((run / "history.csv").read_text().splitlines()) for run in runs]
    minutes = [sum(float(epoch["seconds"]) for epoch in history) / 60 for history in histories]
    for key in ("top1_tta", "top1"):
        assert f"{mean_std([m[key] * 100 for m in metrics], 2)}%" in row, key
    assert f"{mean_std(minutes, 1)} min" in row


@pytest.mark.parametrize("doc", [p for p in DOCS if p.parent.name == "docs"], ids=lambda p: p.name)
def test_every_page_is_linked_from_the_readme(doc):
    readme = {(REPO / target.partition("#")[0]).resolve() for target in links(REPO / "README.md")}
    assert doc.resolve() in readme, f"README.md links nowhere to {doc.relative_to(REPO)}"


def test_the_ladder_table_is_its_evidence():
    """docs/results.md's accuracy-per-minute ladder is what docs/ladder.py computes from the committed validation
    runs and benches, and its figure exists."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("ladder", REPO / "docs" / "ladder.py")
    ladder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ladder)
    results = (REPO / "docs" / "results.md").read_text(encoding="utf-8")
    assert ladder.table([ladder.rung(*spec) for spec in ladder.RUNGS]) in results
    assert ladder.isa_table() in results  # each size's minutes at each instruction-set level
    assert (REPO / "docs" / "figures" / "cpu_ladder.png").exists()


# Docs held to the evidence. A *claim about the current `cpu` recipe* is a table row labelled `cpu` (its first cell
# starts with `cpu`), a sentence in which `cpu` (the `cpu` recipe, the `cpu` row) is, has, trains, uses, reaches,
# averages or takes something, or a sentence that calls `cpu` or a recipe today's, latest, final, current or newest.
# Every setting a claim names (weight decay, widths, batch, learning rate, label smoothing, BN momentum, TTA, training
# images) must be config.RECIPES["cpu"]'s, every parameter count one bench measured for a named size's widths, every
# mean ± std one of a committed sweep of config's recipe (the headline's or another machine's); it may name no
# superseded run (a committed run trained with other settings), nor its accuracy or another width's parameter count;
# a row's evidence links must lead to runs of config's settings. History goes in sentences and rows of its own,
# labelled by the date or commit of its recipe.

CURRENT_WORD = re.compile(r"\b(?:today(?:'s)?|latest|final|current(?:ly)?|newest)\b", re.I)
NAMES_A_RECIPE = re.compile(r"`cpu`|(?<![\w-])cpu(?![\w-])|\brecipe\b")  # case-sensitive: "CPU" is hardware
OTHER_RECIPE = re.compile(r"`(?:scratch|transfer|seed|smoke)`")
VERB = r"(?:is|has|trains|uses|reaches|averages|takes)\b"
CPU_IN_PRESENT = re.compile(rf"(?:^|[\s(])(?:[Tt]he )?`cpu`(?: recipe| row)? {VERB}")
NUMBER = r"(\d+(?:\.\d+)?(?:e-?\d+)?)"
SETTINGS = {  # config field: how the docs write it
    "weight_decay": re.compile(rf"\bweight decay(?: of)? {NUMBER}"),
    "learning_rate": re.compile(rf"\blearning rate(?: of)? {NUMBER}"),
    "label_smoothing": re.compile(rf"\blabel smoothing(?: of)? {NUMBER}"),
    "bn_momentum": re.compile(rf"\b(?:BN|BatchNorm) momentum(?: of)? {NUMBER}"),
    "batch_size": re.compile(r"\bbatch(?: size)?(?: of)? (\d[\d,]*)\b"),
}
WIDTHS = re.compile(r"\bwidths? (\d+/\d+/\d+(?:(?:,| and|, and) \d+/\d+/\d+)*)")
TTA_WORDS = r"(flip grid|flip \+ translate|flip)"
TTA_PHRASE = re.compile(rf"\b{TTA_WORDS}(?: TTA\b| \(\d+ views\))|test-time augmentation \({TTA_WORDS}\b")
TTA_NAMES = {"flip": "flip", "flip + translate": "flip_translate", "flip grid": "flip_grid"}
TRAINING_IMAGES = re.compile(r"\b(\d{1,3},\d{3}) training images")
MILLIONS = re.compile(r"(?<![\d.])(\d+\.\d+)M\b")
MEAN_STD = re.compile(r"(?<![\d.])(\d+\.\d+) ± (\d+\.\d+)")
NOT_TRIED = re.compile(rf"\b(?:nothing|anything) (?:above|over|beyond|higher than) {NUMBER}", re.I)
NOT_THE_RECIPE = {"seed", "data", "verify", "size", "minutes", "deterministic", "allow_over_budget", "generated"}
OUTPUTS = REPO / "outputs"


def sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z*`(\[])", text.strip()) if s]


def units(path: Path) -> list[tuple[int, str, str, str]]:
    """(line, kind, text, context) of each heading, table row and sentence outside fenced code, inline code kept:
    kind "row" for a table row (whose cells are also split into sentences), "sentence" otherwise; context is the
    paragraph or row the unit stands in."""
    found, paragraph, fenced = [], [], False  # paragraph: (line number, text) of its lines

    def flush():
        text, cursor = " ".join(t for _, t in paragraph), 0
        ends = [sum(len(t) + 1 for _, t in paragraph[: i + 1]) for i in range(len(paragraph))]
        for sentence in sentences(text):
            cursor = text.index(sentence, cursor)
            line = next(n for (n, _), end in zip(paragraph, ends, strict=True) if cursor < end)
            found.append((line, "sentence", sentence, text))
        paragraph.clear()

    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fenced ^= bool(FENCE.match(line))
        if fenced or FENCE.match(line) or not line.strip():
            flush()
        elif line.lstrip().startswith("|"):
            flush()
            if not re.match(r"^\s*\|[\s:|-]*$", line):
                found.append((number, "row", line, line))
                found.extend((number, "sentence", s, line) for cell in line.split("|") for s in sentences(cell))
        elif line.lstrip().startswith("#"):
            flush()
            found.append((number, "sentence", line.lstrip("# ").strip(), line))
        else:
            if re.match(r"^\s*(?:[-*]|\d+\.)\s", line):  # a list item starts a paragraph
                flush()
            paragraph.append((number, line.strip()))
    flush()
    return found


def is_current_claim(kind: str, text: str) -> bool:
    if kind == "row":
        return text.split("|")[1].strip().strip("*").startswith("`cpu`")
    names_cpu = "`cpu`" in text or (NAMES_A_RECIPE.search(text) and not OTHER_RECIPE.search(text))
    return bool(CPU_IN_PRESENT.search(text) or (CURRENT_WORD.search(text) and names_cpu))


def read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def differences(saved: dict, recipe) -> dict:
    """The recipe's fields that a saved config.json holds with another value: {field: (saved, config's)}. A run of a
    named size (the time budget's choice) has that size's widths."""
    from cifar100_helpers.config import SIZES

    now = {k: list(v) if isinstance(v, tuple) else v for k, v in recipe.to_dict().items()}
    if saved.get("size") in SIZES:
        now["widths"] = list(SIZES[saved["size"]])
    return {f: (saved[f], now[f]) for f in sorted(set(saved) & set(now) - NOT_THE_RECIPE) if saved[f] != now[f]}


def linked_configs(target: Path) -> list[Path]:
    """The config.json files of the runs an evidence link leads to (a run's file, a run folder or a sweep)."""
    folder = target if target.is_dir() else target.parent
    return [folder / "config.json"] if (folder / "config.json").exists() else sorted(folder.glob("*/config.json"))


def superseded(recipe) -> tuple[set, set]:
    """The top folders under outputs/ of committed runs trained with other settings than the recipe's, and their
    top-1 figures (each run's and each sweep's mean, plain and with TTA)."""
    runs = [p.parent for p in OUTPUTS.rglob("config.json") if (p.parent / "metrics.json").exists()]
    stale = [run for run in runs if differences(read(run / "config.json"), recipe)]
    folders = {run.relative_to(OUTPUTS).parts[0] for run in stale}
    groups = [[run] for run in stale] + [[run for run in stale if run.parent.name == name] for name in folders]
    figures = set()
    for group in filter(None, groups):
        metrics = [read(run / "metrics.json") for run in group]
        figures |= {f"{statistics.mean(m[key] * 100 for m in metrics):.2f}" for key in ("top1", "top1_tta")}
    return folders, figures


def parameter_counts(sizes: set) -> tuple[set, set]:
    """The parameter counts bench measured for the `cpu` network at its named sizes' widths, and those of other
    widths."""
    counts = {}
    for bench in OUTPUTS.rglob("bench-*.json"):
        for entry in read(bench).get("recipes", []):
            if entry.get("recipe") == "cpu" and "parameters" in entry:
                counts.setdefault(tuple(entry.get("overrides", {}).get("widths", ())), set()).add(entry["parameters"])
    mine = set().union(*(counts.get(widths, set()) for widths in sizes))
    assert mine, f"bench measured no parameter count for any of the widths {sorted(sizes)}"
    return mine, set().union(*counts.values()) - mine


def current_sweeps(recipe) -> list[Path]:
    """The README's headline sweep first, then every other committed sweep whose runs all have the recipe's settings
    (each at the size its machine's time budget chose)."""
    headline = REPO / re.search(r"\]\((outputs/[^)#]+)/sweep\.json\)", headline_row()).group(1)
    stale = {run.parent.name: differences(read(run), recipe) for run in headline.glob("*/config.json")}
    assert not any(stale.values()), f"the README's headline sweep is not config's recipe: {stale}"
    others = [p.parent for p in sorted(OUTPUTS.glob("*/sweep.json")) if p.parent != headline]
    return [headline] + [s for s in others if not any(differences(read(c), recipe) for c in s.glob("*/config.json"))]


def sweep_statements(sweep: Path) -> tuple[set, set]:
    """A sweep's means ± std as the docs write them (top-1, top-5, superclass, training and whole-pipeline minutes),
    and its top-1 figures."""
    runs = sorted(p.parent for p in sweep.glob("*/metrics.json"))
    metrics = [read(run / "metrics.json") for run in runs]
    keys = ("top1", "top1_tta", "top5", "top5_tta", "superclass_top1")
    stated = {mean_std([m[key] * 100 for m in metrics], 2) for key in keys}
    histories = [csv.DictReader((run / "history.csv").read_text().splitlines()) for run in runs]
    stated.add(mean_std([sum(float(epoch["seconds"]) for epoch in h) / 60 for h in histories], 1))
    stated.add(mean_std([run["wall_seconds"] / 60 for run in read(sweep / "sweep.json")["runs"]], 1))
    figures = {f"{m[key] * 100:.2f}" for m in metrics for key in ("top1", "top1_tta")}
    return stated, figures | {f"{statistics.mean(m[key] * 100 for m in metrics):.2f}" for key in ("top1", "top1_tta")}


@pytest.fixture(scope="module")
def evidence() -> dict:
    """What config and the committed evidence say is current, and what is superseded."""
    from cifar100_helpers import config

    recipe = config.RECIPES["cpu"]
    folders, stale_figures = superseded(recipe)
    parameters, stale_counts = parameter_counts(set(config.SIZES.values()))
    stated, figures = set(), set()
    for sweep in current_sweeps(recipe):
        sweep_stated, sweep_figures = sweep_statements(sweep)
        stated, figures = stated | sweep_stated, figures | sweep_figures
    tried = {read(p).get("weight_decay") for p in OUTPUTS.rglob("config.json")}
    tried |= {read(p)["changes"].get("weight_decay") for p in OUTPUTS.rglob("validation.json")}
    return {
        "recipe": recipe, "sizes": set(config.SIZES.values()), "stale_folders": folders,
        "stale_figures": stale_figures - figures, "parameters": parameters, "stale_counts": stale_counts,
        "mean_std": stated, "tried_weight_decays": tried - {None},
    }  # fmt: skip


def setting_problems(text: str, ev: dict) -> list[str]:
    recipe, problems = ev["recipe"], []
    for field, pattern in SETTINGS.items():
        for value in pattern.findall(text):
            if float(value.replace(",", "")) != float(getattr(recipe, field)):
                problems.append(f"{field.replace('_', ' ')} {value}, config has {getattr(recipe, field)}")
    for listed in WIDTHS.findall(text):
        triples = [tuple(map(int, t.split("/"))) for t in re.findall(r"\d+/\d+/\d+", listed)]
        if len(triples) == 1 and triples[0] != recipe.widths:
            problems.append(f"widths {listed}, config has {recipe.widths}")
        elif len(triples) > 1 and not set(triples) <= ev["sizes"]:
            problems.append(f"widths {listed} are not all config.SIZES")
    for mode in (a or b for a, b in TTA_PHRASE.findall(text)):
        if TTA_NAMES[mode] != recipe.tta:
            problems.append(f"{mode} TTA, config has {recipe.tta}")
    for images in TRAINING_IMAGES.findall(text):
        if int(images.replace(",", "")) != round(50_000 * (1 - recipe.val_fraction)):
            problems.append(f"{images} training images, config has val_fraction {recipe.val_fraction}")
    return problems


def measurement_problems(text: str, ev: dict) -> list[str]:
    problems = []
    for millions in MILLIONS.findall(text):
        if millions not in {f"{count / 1e6:.{len(millions.split('.')[1])}f}" for count in ev["parameters"]}:
            problems.append(f"{millions}M is no named size's parameter count ({sorted(ev['parameters'])})")
    for count in ev["stale_counts"]:
        if re.search(rf"(?<![\d.,]){count:,}(?![\d,])|(?<![\d.]){count / 1e6:.2f}M", text):
            problems.append(f"{count:,} parameters are another width's")
    for mean, std in MEAN_STD.findall(text):
        if f"{mean} ± {std}" not in ev["mean_std"]:
            problems.append(f"{mean} ± {std} is none of the means ± std of a sweep of config's recipe")
    for folder in ev["stale_folders"]:
        if re.search(rf"(?<![\w-]){re.escape(folder)}(?![\w-])", text):
            problems.append(f"names {folder}, trained with other settings than config's")
    for figure in ev["stale_figures"]:
        if re.search(rf"(?<![\d.]){re.escape(figure)}%", text):
            problems.append(f"{figure}% is a superseded run's accuracy")
    return problems


def evidence_link_problems(doc: Path, row: str, recipe) -> list[str]:
    problems = []
    for target in filter(is_relative, LINK.findall(row)):
        path = (doc.parent / target.partition("#")[0]).resolve()
        if path.is_relative_to(OUTPUTS.resolve()) and path.exists():
            for saved in linked_configs(path):
                changed = differences(read(saved), recipe)
                if changed:
                    problems.append(f"links {saved.parent.relative_to(REPO)}, trained with (its, config's) {changed}")
    return problems


def test_claims_about_the_current_cpu_recipe_match_config_and_evidence(evidence):
    """Every sentence or row that presents something as the current `cpu` (see above) states config's settings and
    the evidence's measurements, and names no superseded run."""
    found, bad = 0, []
    for doc in DOCS:
        for line, kind, text, _ in units(doc):
            if is_current_claim(kind, text):
                found += 1
                problems = setting_problems(text, evidence) + measurement_problems(text, evidence)
                problems += evidence_link_problems(doc, text, evidence["recipe"]) if kind == "row" else []
                bad += [f"{doc.relative_to(REPO)}:{line}: {problem}: {text[:150]!r}" for problem in problems]
    assert found >= 10, f"the claim finder found {found} claims: is a pattern broken?"
    assert not bad, "claims about the current cpu recipe that config or the evidence contradict:\n" + "\n".join(bad)


def test_nothing_tried_is_called_untried(evidence):
    """A sentence that says nothing above a weight decay X has been tried, in a paragraph or row about weight decay,
    is wrong once a committed run (config.json, or a tune run's validation.json) trained a weight decay above X."""
    bad = []
    for doc in DOCS:
        for line, _, text, context in units(doc):
            if "weight decay" in context and re.search(r"\b(?:un)?tried\b", text, re.I):
                for value in NOT_TRIED.findall(text):
                    above = sorted(wd for wd in evidence["tried_weight_decays"] if wd > float(value))
                    if above:
                        bad.append(f"{doc.relative_to(REPO)}:{line}: {text[:150]!r}: weight decay {above} was tried")
    assert not bad, "claims that nothing above a weight decay was tried, against the evidence:\n" + "\n".join(bad)


def test_the_showcase_is_a_run_of_the_current_recipe():
    """outputs/showcase/, the run README links for reading without running anything, was trained with config's `cpu`
    recipe (at the size its time budget chose): a change to the recipe fails here until the showcase is made again
    (make report ARGS="--seed N --output outputs/showcase" on the real data, nothing else running)."""
    from cifar100_helpers import config

    saved = read(OUTPUTS / "showcase" / "config.json")
    assert saved["recipe"] == "cpu" and not saved["generated"], "the showcase must be a cpu run on the real data"
    stale = differences(saved, config.RECIPES["cpu"])
    assert not stale, f"outputs/showcase/ was trained with (its, config's) {stale}: regenerate it from today's recipe"
