#!/usr/bin/env python3
"""Plot the loss curves of several coil runs into one PNG.

Each argument is a JSONL metrics file written by `coil train` (logging.jsonl): one JSON object per
logged step with "step", "loss" and, on held-out steps, "eval_loss". A resumed run appends to the
same file, so a step logged twice keeps its last value. Labels come from the objects' "run" field
(the run name), else from the file name.

    python3 launch/plot_metrics.py runs/tiny-softmax/metrics.jsonl runs/tiny-2mamba/metrics.jsonl \
        -o losses.png
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)


def read_run(path):
    """Returns (label, {step: loss}, {step: eval_loss}); the last entry of a step wins."""
    train, held_out, label = {}, {}, None
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise SystemExit(f"{path}:{n}: not a JSON object: {e}")
            label = obj.get("run", label)
            step = obj.get("step")
            if step is None:
                continue
            if obj.get("loss") is not None:
                train[step] = obj["loss"]
            if obj.get("eval_loss") is not None:
                held_out[step] = obj["eval_loss"]
    if label is None:
        label = os.path.splitext(os.path.basename(path))[0]
    return label, train, held_out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("jsonl", nargs="+", help="metrics files of the runs to compare")
    parser.add_argument("-o", "--output", default="losses.png", help="PNG to write")
    parser.add_argument("--title", default="training and held-out loss")
    parser.add_argument("--log-x", action="store_true", help="logarithmic step axis")
    args = parser.parse_args(argv)

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, path in enumerate(args.jsonl):
        label, train, held_out = read_run(path)
        color = colors[i % len(colors)]
        if train:
            steps = sorted(train)
            ax.plot(steps, [train[s] for s in steps], color=color, label=f"{label} (train)")
        if held_out:
            steps = sorted(held_out)
            ax.plot(steps, [held_out[s] for s in steps], color=color, linestyle="--", marker="o",
                    markersize=3, label=f"{label} (held-out)")
        if not train and not held_out:
            print(f"warning: {path} has no loss values", file=sys.stderr)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    if args.log_x:
        ax.set_xscale("log")
    ax.set_title(args.title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
