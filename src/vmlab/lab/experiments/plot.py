"""Plots of experiment results with matplotlib's Agg backend (no display needed): one PNG and one SVG
per experiment, a panel per Panel, stacked."""

from __future__ import annotations

from pathlib import Path

from vmlab.lab.experiments import Result


def save(result: Result, out_dir: Path) -> list[Path]:
    """Draw `result` into OUT_DIR/<name>.png and .svg; the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(len(result.panels), 1, figsize=(8, 3.2 * len(result.panels)), squeeze=False)
    for ax, panel in zip(axes[:, 0], result.panels, strict=True):
        for s in panel.series:
            ax.plot(s.x, s.y, marker="o" if len(s.x) < 30 else None, markersize=3, label=s.label)
        for i, (label, y) in enumerate(panel.hlines):
            ax.axhline(y, linestyle="--", linewidth=1, color=f"C{i + len(panel.series)}", label=label)
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel)
        if panel.logy:
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    axes[0, 0].set_title(result.title)
    fig.tight_layout()
    paths = [out_dir / f"{result.name}.png", out_dir / f"{result.name}.svg"]
    for path in paths:
        fig.savefig(path)
    plt.close(fig)
    return paths
