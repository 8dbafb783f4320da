#!/usr/bin/env python3
"""launch/plot_metrics.py draws two runs' JSONL metrics (one resumed, with a repeated step) into a PNG.

usage: plot_metrics_test.py SOURCE_DIR WORK_DIR
"""
import json
import os
import shutil
import subprocess
import sys


def main():
    source, work = sys.argv[1:3]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    files = []
    for run, scale in (("softmax", 1.0), ("2mamba", 0.9)):
        path = os.path.join(work, run + ".jsonl")
        with open(path, "w") as f:
            for step in list(range(1, 41)) + [30, 40]:  # a resume re-logs steps 30 and 40
                obj = {"run": run, "step": step, "loss": scale * (5.0 - step / 20), "mfu": None}
                if step % 10 == 0:
                    obj["eval_loss"] = scale * (5.1 - step / 20)
                f.write(json.dumps(obj) + "\n")
        files.append(path)
    out = os.path.join(work, "losses.png")
    subprocess.run([sys.executable, os.path.join(source, "launch", "plot_metrics.py"), *files,
                    "-o", out], check=True)
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert os.path.getsize(out) > 10000, os.path.getsize(out)
    print("plot ok:", out)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
