"""Training curves: train and test error per epoch, with SGDR restarts marked."""

from __future__ import annotations

import io
from pathlib import Path

from onebit.atomic import write_bytes


def plot_curves(metrics: list[dict], path: Path, title: str, restarts: list[int] = ()) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [m["epoch"] for m in metrics]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    ax.plot(epochs, [100 * m["train_err"] for m in metrics], "--", label="train error")
    ax.plot(epochs, [100 * m["test_err"] for m in metrics], "-", label="test error")
    for r in restarts:
        if 0 < r < max(epochs, default=0):
            ax.axvline(r, color="0.85", lw=0.8, zorder=0)
    ax.set_xlabel("epoch")
    ax.set_ylabel("error (%)")
    ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    write_bytes(path, buf.getvalue())
