"""The accuracy harness runs the seeds' CIFAR protocol on CIFAR-format files (written here, tiny) end to end."""

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np

HARNESS = Path(__file__).resolve().parents[1] / "benchmarks" / "accuracy.py"


def write_cifar10(folder: Path, per_batch: int = 10, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        batch = {b"batch_label": name.encode(), b"labels": rng.integers(0, 10, per_batch).tolist(),
                 b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 b"filenames": [f"{name}_{i}.png".encode() for i in range(per_batch)]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=3)


def test_harness_runs_the_cifar_protocol_on_cifar_files(tmp_path):
    data = tmp_path / "cifar-10-batches-py"
    write_cifar10(data)
    out = tmp_path / "acc"
    cmd = [sys.executable, str(HARNESS), "--data", f"cifar10:{data}", "--arch", "wrn-8-1",
           "--configs", "1bit-srelu,1bit-srelu-a4", "--epochs", "1", "--batch-size", "25", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for config in ("1bit-srelu", "1bit-srelu-a4"):
        result = json.loads((out / f"{config}-seed0.json").read_text())
        assert result["dataset"]["name"] == "cifar10"
        assert result["dataset"]["image_shape"] == [32, 32, 3]
        assert result["epochs"] == 1 and 0.0 <= result["final_test_acc"] <= 1.0
        # The seeds' CIFAR recipe: flips, +-4-pixel shifts, 18x18 cutout, SGD 0.1 momentum 0.9.
        assert result["augment"] == {"hflip": True, "shift": 4, "cutout": 18}
        assert result["train_config"]["lr"] == 0.1 and result["train_config"]["momentum"] == 0.9
    summary = (out / "summary.md").read_text()
    assert "1bit-srelu-a4" in summary and (out / "summary.png").stat().st_size > 0
    assert json.loads((out / "summary.json").read_text())
