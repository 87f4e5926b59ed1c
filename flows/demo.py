"""`faceaudit demo`: the built-in model on six shipped faces (two photographs, four AI portraits) and
one broken file, so a new user sees verdicts, doubt and an unreadable row without any dataset.

The images and their attribution live in flows/sample_faces/ (README.md there says where each comes from).
"""

from __future__ import annotations

from pathlib import Path

SAMPLE_FOLDER = Path(__file__).resolve().parent / "sample_faces" / "images"


def verdict_table(rows: list[dict], thresholds: dict) -> list[str]:
    """The demo's printout: one line per file with its verdict, P(AI), why, and the training family it
    looks most like."""
    lines = [f"{'file':<24} {'verdict':<13} {'P(AI)':>6}  {'looks like':<34} why"]
    for row in sorted(rows, key=lambda r: r["path"]):
        if row["verdict"] == "unreadable":
            p_ai, like, why = "", "", row["error"]
        else:
            p_ai, like, why = f"{float(row['p_ai']):.3f}", _looks_like(row), _why(row, thresholds)
        lines.append(f"{row['path']:<24} {row['verdict']:<13} {p_ai:>6}  {like:<34} {why}")
    return lines


def _looks_like(row: dict) -> str:
    if not row.get("nearest_family"):
        return ""
    return f"{row['nearest_family']} ({row['nearest_source']}, {float(row['nearest_similarity']):.2f})"


def _why(row: dict, thresholds: dict) -> str:
    reason = row.get("uncertain_reason") or ""
    if reason == "ood":
        return f"unlike the training images (OOD score {row['ood_score']:.3f} > {thresholds['ood']:.3f})"
    if reason == "disagree":
        return "P(AI) high, but a linear probe on the texture columns does not agree"
    if reason == "unlike_real":
        return "P(AI) low, but the face looks like none of the real collections the model knows"
    if reason == "band":
        return f"P(AI) between the thresholds {thresholds['real']:.4g} and {thresholds['ai']:.4g}"
    if row["verdict"] == "real":
        return f"P(AI) at or below {thresholds['real']:.4g}"
    return f"P(AI) at or above {thresholds['ai']:.4g}"
