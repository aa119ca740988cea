"""Re-score the three trained models of this sweep on the test split with another TTA mode.

The models are the ones the sweep's runs trained and saved (model.keras); only the evaluation differs.
Usage (from the repository root):
    .venv/bin/python outputs/sweep-cpu-50k/tta_rescore.py flip_grid ../shared/data/cifar-100-python.tar.gz
Writes outputs/sweep-cpu-50k/tta-rescore-<mode>.json.
"""

import json
import sys
from pathlib import Path

import keras
import numpy as np

from cifar100_helpers import data, evaluation

mode, archive = sys.argv[1], sys.argv[2]
here = Path(__file__).parent
ds = data.load(archive, verify=False, val_fraction=0.0, seed=0)
rows = {}
for run in sorted(here.glob("cpu-seed*")):
    model = keras.models.load_model(run / "model.keras")
    reported = json.loads((run / "metrics.json").read_text())
    probs = evaluation.predict(model, ds.test.x, tta=mode)
    rows[run.name] = {
        "top1_reported_plain": reported["top1"],
        "top1_reported_tta": reported["top1_tta"],
        "tta_reported": reported["tta"],
        f"top1_{mode}": evaluation.top_k_accuracy(probs, ds.test.fine, 1),
        f"top5_{mode}": evaluation.top_k_accuracy(probs, ds.test.fine, 5),
    }
    print(run.name, rows[run.name], flush=True)
values = [r[f"top1_{mode}"] for r in rows.values()]
summary = {"mode": mode, "runs": rows, "mean": float(np.mean(values)), "std": float(np.std(values, ddof=1))}
(here / f"tta-rescore-{mode}.json").write_text(json.dumps(summary, indent=1) + "\n")
print(f"{mode}: mean {summary['mean']:.2%} ± {summary['std']:.2%}")
