"""Matplotlib charts rendered to base64 PNG data URIs, so the report needs no network and no side files."""

from __future__ import annotations

import base64
import io

SMALL = (5.2, 2.8)  # charts shown two per row
PALETTE = {"train": "#2563eb", "val": "#f97316", "lr": "#7c3aed", "hist": "#0d9488", "speed": "#16a34a"}


def _figure(width: float = 6.4, height: float = 3.0):
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=110)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.spines["left"].set_color("#cbd5e1")
    ax.spines["bottom"].set_color("#cbd5e1")
    ax.tick_params(colors="#475569", labelsize=8)
    ax.grid(True, color="#e2e8f0", linewidth=0.7)
    ax.set_axisbelow(True)
    return fig, ax


def to_data_uri(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", facecolor="white")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def line_chart(
    series: dict[str, list[tuple[float, float]]], xlabel: str, ylabel: str, size: tuple[float, float] = (9.6, 3.2)
) -> str | None:
    """Lines of (x, y) points, one per named series; None when every series is empty."""
    series = {name: points for name, points in series.items() if points}
    if not series:
        return None
    fig, ax = _figure(*size)
    for name, points in series.items():
        xs, ys = zip(*points)
        marker = "o" if len(points) < 30 else None
        ax.plot(xs, ys, label=name, color=PALETTE.get(name, None), linewidth=1.8, marker=marker, markersize=3)
    ax.set_xlabel(xlabel, color="#475569", fontsize=9)
    ax.set_ylabel(ylabel, color="#475569", fontsize=9)
    if len(series) > 1:
        ax.legend(frameon=False, fontsize=8)
    return to_data_uri(fig)


def histogram_chart(lengths: list[int], xlabel: str, max_length: int | None = None) -> str | None:
    """A histogram of example lengths, with the configured max_length as a dashed line."""
    if not lengths:
        return None
    fig, ax = _figure(*SMALL)
    ax.hist(lengths, bins=min(30, max(5, len(set(lengths)))), color=PALETTE["hist"], alpha=0.85, edgecolor="white")
    if max_length and max_length <= max(lengths) * 1.5:
        ax.axvline(max_length, color="#dc2626", linestyle="--", linewidth=1.2, label=f"max_length {max_length}")
        ax.legend(frameon=False, fontsize=8)
    ax.set_xlabel(xlabel, color="#475569", fontsize=9)
    ax.set_ylabel("examples", color="#475569", fontsize=9)
    return to_data_uri(fig)
