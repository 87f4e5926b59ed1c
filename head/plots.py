"""The figures a reviewer reads beside metrics.json: ROC, precision-recall, reliability, confusion,
risk-coverage and training curves, one PNG each."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceaudit.data.atomic import replacing
from faceaudit.head.uncertainty import Prediction


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8, 4.0), dpi=100)
    return plt, fig, ax


def _save(plt, fig, path: Path) -> None:
    """Save as one atomic replacement, never through a symlink (data.atomic)."""
    fig.tight_layout()
    with replacing(path) as scratch:
        fig.savefig(scratch, format="png")
    plt.close(fig)


def write_plots(
    folder: Path,
    y: np.ndarray,
    prediction: Prediction,
    verdict: np.ndarray,
    history: dict[str, list[float]] | None = None,
    title: str = "",
) -> list[str]:
    """Write every plot into `folder`; returns the file names."""
    from sklearn.metrics import confusion_matrix, precision_recall_curve, roc_curve

    folder.mkdir(parents=True, exist_ok=True)
    p = prediction.p_ai
    written = []
    both = len(np.unique(y)) == 2

    if both:
        plt, fig, ax = _figure()
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr)
        ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=0.8)
        ax.set(
            xlabel="real called AI (false positive rate)",
            ylabel="AI caught (true positive rate)",
            title=f"ROC {title}",
        )
        _save(plt, fig, folder / "roc.png")
        written.append("roc.png")

        plt, fig, ax = _figure()
        precision, recall, _ = precision_recall_curve(y, p)
        ax.plot(recall, precision)
        ax.set(xlabel="recall (AI-generated)", ylabel="precision", title=f"Precision-recall {title}")
        _save(plt, fig, folder / "precision_recall.png")
        written.append("precision_recall.png")

    plt, fig, ax = _figure()
    edges = np.linspace(0, 1, 11)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, 9)
    centres, observed, counts = [], [], []
    for b in range(10):
        mask = which == b
        if mask.any():
            centres.append(p[mask].mean())
            observed.append(y[mask].mean())
            counts.append(mask.sum())
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=0.8)
    ax.plot(centres, observed, "o-")
    ax.set(
        xlabel="predicted P(AI-generated)", ylabel="observed share AI-generated", title=f"Reliability {title}"
    )
    _save(plt, fig, folder / "reliability.png")
    written.append("reliability.png")

    plt, fig, ax = _figure()
    matrix = confusion_matrix(y, (p >= 0.5).astype(int), labels=[0, 1])
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", fontsize=12)
    ax.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=["real", "ai"],
        yticklabels=["real", "ai"],
        xlabel="predicted",
        ylabel="true",
        title=f"Confusion at 0.5 {title}",
    )
    _save(plt, fig, folder / "confusion_matrix.png")
    written.append("confusion_matrix.png")

    plt, fig, ax = _figure()
    confidence = np.maximum(p, 1 - p)
    order = np.argsort(-confidence)
    wrong = ((p >= 0.5).astype(int) != y)[order]
    coverage = np.arange(1, len(y) + 1) / max(len(y), 1)
    ax.plot(coverage, np.cumsum(wrong) / np.arange(1, len(y) + 1), label="by confidence")
    by_mi = ((p >= 0.5).astype(int) != y)[np.argsort(prediction.mutual_info)]
    ax.plot(coverage, np.cumsum(by_mi) / np.arange(1, len(y) + 1), label="by mutual information")
    confident = verdict != "uncertain"
    if confident.any():
        ax.axvline(confident.mean(), color="grey", linestyle=":", label="uncertain band")
    ax.set(xlabel="coverage (share judged)", ylabel="error rate among judged", title=f"Risk-coverage {title}")
    ax.legend()
    _save(plt, fig, folder / "risk_coverage.png")
    written.append("risk_coverage.png")

    if history and history.get("train_loss"):
        plt, fig, ax = _figure()
        ax.plot(history["train_loss"], label="train")
        if history.get("val_loss"):
            ax.plot(history["val_loss"], label="validation")
        ax.set(xlabel="epoch", ylabel="loss (NLL per image)", title="Training")
        ax.legend()
        _save(plt, fig, folder / "training_loss.png")
        written.append("training_loss.png")
    return written


def write_folds_plot(folder: Path, report: dict, stem: str) -> str:
    """Stacked bars: how each left-out fold's real and AI faces were judged by the model trained
    without it; written as `stem`.png."""
    folder.mkdir(parents=True, exist_ok=True)
    labels, shares = [], []
    for source, fold in report["folds"].items():
        for name in ("real", "ai"):
            if fold[name]:
                labels.append(f"{source}\n{name}")
                shares.append([fold[name][v] for v in ("ai_generated", "uncertain", "real")])
    plt, fig, ax = _figure()
    fig.set_size_inches(max(4.8, 0.9 * len(labels) + 1.5), 4.0)
    bottom = np.zeros(len(labels))
    for k, (verdict, colour) in enumerate(
        (("ai_generated", "#c0392b"), ("uncertain", "#bdc3c7"), ("real", "#2e86c1"))
    ):
        values = np.array([row[k] for row in shares])
        ax.bar(range(len(labels)), values, bottom=bottom, color=colour, label=verdict)
        bottom += values
    ax.set_xticks(range(len(labels)), labels, fontsize=7)
    what = {"family": "generator family", "collection": "real collection"}.get(report.get("kind"), "source")
    ax.set(ylabel=f"share of the left-out {what}'s faces", title=f"Judged without training on the {what}")
    ax.legend(fontsize=7, loc="upper right")
    _save(plt, fig, folder / f"{stem}.png")
    return f"{stem}.png"
