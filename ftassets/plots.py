"""Figures for Dagster metadata and reports: matplotlib PNGs embedded as base64 in markdown."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def png_bytes(figure: plt.Figure) -> bytes:
    """The figure as PNG (and closed)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    return f"data:image/png;base64,{base64.b64encode(png).decode()}"


def image_data_uri(figure: plt.Figure) -> str:
    """The figure as a ``data:image/png;base64,...`` URI (and closed)."""
    return data_uri(png_bytes(figure))


def markdown_image(figure: plt.Figure, alt: str) -> str:
    """The figure as ``![alt](data:image/png;base64,...)``: Dagster metadata has no image type."""
    return f"![{alt}]({image_data_uri(figure)})"


def loss_curve(train_loss: list[tuple[int, float]], val_loss: list[tuple[int, float]], title: str) -> plt.Figure:
    figure, axes = plt.subplots(figsize=(6, 3.2))
    if train_loss:
        axes.plot(*zip(*train_loss), label="train", linewidth=1.5)
    if val_loss:
        axes.plot(*zip(*val_loss), label="validation", marker="o", linewidth=1.5)
    axes.set(xlabel="step", ylabel="loss", title=title)
    axes.grid(alpha=0.3)
    axes.legend()
    return figure
