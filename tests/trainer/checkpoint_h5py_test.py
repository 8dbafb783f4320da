#!/usr/bin/env python3
"""A coil checkpoint read with h5py: every parameter by its state-dict name, with its AdamW moments,
the same shapes as `coil checkpoint info` lists, finite values, and the format attributes.

usage: checkpoint_h5py_test.py COIL_EXE SOURCE_DIR WORK_DIR
"""
import os
import re
import shutil
import subprocess
import sys

import h5py
import numpy as np


def main():
    coil, source, work = sys.argv[1:4]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    config = os.path.join(source, "configs", "runs", "tiny-softmax.yaml")
    ckpt_dir = os.path.join(work, "ck")
    subprocess.run([coil, "train", "--config", config, "--set", "train.steps=3",
                    "--set", "schedule.warmup=1", "--set", "train.log_every=0",
                    "--set", "checkpoint.dir=" + ckpt_dir,
                    "--set", "logging.jsonl=" + os.path.join(work, "m.jsonl")],
                   check=True, stdout=subprocess.DEVNULL)
    path = os.path.join(ckpt_dir, "step_00000003.h5")
    info = subprocess.run([coil, "checkpoint", "info", path], check=True, capture_output=True,
                          text=True).stdout
    listed = {}
    for m in re.finditer(r"^\s+(/\S+) f32 \(([\d, ]*)\)$", info, re.M):
        listed[m.group(1)] = tuple(int(x) for x in m.group(2).split(",") if x.strip())
    assert listed, info

    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == b"coil-checkpoint", f.attrs["format"]
        assert int(f.attrs["format_version"]) == 1
        assert int(f.attrs["step"]) == 3
        assert b"mixer: softmax" in f.attrs["model_config_yaml"]
        names = list(f["params"].keys())
        assert "embedding.weight" in names and "lm_head.weight" in names, names
        assert any(n.startswith("layers.1.") for n in names), names
        for name in names:
            p = f["params/" + name][()]
            m = f["optim/m/" + name][()]
            v = f["optim/v/" + name][()]
            assert p.dtype == np.float32, (name, p.dtype)
            assert p.shape == listed["/params/" + name], (name, p.shape)
            assert m.shape == p.shape and v.shape == p.shape, name
            assert np.isfinite(p).all() and np.isfinite(m).all() and (v >= 0).all(), name
            assert int(f["optim/m/" + name].attrs["step"]) == 3, name
        assert len(names) * 3 == len(listed), (len(names), len(listed))
        assert int(f["optim"].attrs["step_count"]) == 3
        assert int(f["data/train"].attrs["batches"]) == 3
    # An HDF5 file that is not a coil checkpoint, and a checkpoint missing one tensor: one-line
    # errors naming the file and the problem (exit status 1).
    foreign = os.path.join(work, "foreign.h5")
    with h5py.File(foreign, "w") as f:
        f["x"] = np.zeros(3)
    broken = os.path.join(work, "broken.h5")
    shutil.copy(path, broken)
    with h5py.File(broken, "a") as f:
        del f["params/lm_head.weight"]
    for bad, what in ((foreign, "not a coil checkpoint"), (broken, "missing tensor /params/lm_head")):
        r = subprocess.run([coil, "train", "--config", config, "--set", "checkpoint.dir=" + ckpt_dir,
                            "--set", "logging.jsonl=\"\"", "--resume", bad],
                           capture_output=True, text=True)
        lines = r.stderr.strip().split("\n")
        assert r.returncode == 1 and len(lines) == 1, (r.returncode, r.stderr)
        assert what in lines[0] and bad in lines[0], lines[0]
    print(f"read {len(names)} parameters with their moments from {path}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
