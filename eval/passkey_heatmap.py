#!/usr/bin/env python3
"""Pass-key retrieval heatmap: accuracy per context length (x) and needle depth (y).

usage: passkey_heatmap.py RESULTS.json OUT.png

RESULTS.json is a `coil eval --out` file (its details.passkey) or the passkey details object alone
({"lengths": [...], "depths": [...], "accuracy": [[per depth] per length]}). `coil eval` runs this
script itself when --tasks includes passkey and python3 with matplotlib is available.
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    with open(argv[1]) as f:
        doc = json.load(f)
    grid = doc.get("details", {}).get("passkey", doc)
    for key in ("lengths", "depths", "accuracy"):
        if key not in grid:
            sys.stderr.write(f"{argv[1]}: no passkey '{key}' (expected a coil eval results file)\n")
            return 1
    lengths, depths, acc = grid["lengths"], grid["depths"], grid["accuracy"]
    # Rows = depths (top: needle at the start), columns = lengths.
    cells = [[acc[li][di] for li in range(len(lengths))] for di in range(len(depths))]
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * len(lengths), 1.0 + 0.6 * len(depths)))
    im = ax.imshow(cells, vmin=0.0, vmax=1.0, cmap="RdYlGn", aspect="auto")
    ax.set_xticks(range(len(lengths)), [str(n) for n in lengths])
    ax.set_yticks(range(len(depths)), [f"{d:.0%}" for d in depths])
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("needle depth")
    for di in range(len(depths)):
        for li in range(len(lengths)):
            v = cells[di][li]
            ax.text(li, di, "-" if v is None else f"{v:.2f}", ha="center", va="center", fontsize=8)
    ax.set_title("pass-key retrieval accuracy")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(argv[2], dpi=100)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
