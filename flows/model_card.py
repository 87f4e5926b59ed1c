"""The README written into every model folder: what the model is, what it was trained on, how well it
does per source, and how it was made, so a reviewer needs nothing else to judge it."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from data.atomic import write_text


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _metrics_table(metrics: dict) -> list[str]:
    lines = [
        "| scope | n | accuracy | ROC-AUC | ECE | coverage | selective accuracy | real called AI "
        "| MI AUROC (wrong) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rows = [("all", metrics), *metrics.get("groups", {}).items()]
    for name, m in rows:
        lines.append(
            f"| {name} | {m['n']} | {_pct(m['accuracy'])} | {_num(m['roc_auc'])} | {_num(m['ece'])} | "
            f"{_pct(m['coverage'])} | {_pct(m['selective_accuracy'])} | {_pct(m['real_called_ai_rate'])} | "
            f"{_num(m['mutual_info_auroc_wrong'])} |"
        )
    return lines


def _unseen_table(report: dict) -> list[str]:
    """One row per source left out: how its faces were judged by the model trained without it."""
    bounds = report["bounds"]
    lines = [
        "## Sources never trained on (leave one source out)",
        "",
        "For each source, the same recipe was trained on the other sources and judged every image of the",
        "one left out, with the uncertain band and OOD threshold chosen on the *other* folds only: an",
        "honest estimate for a source nobody has seen. Bounds: a left-out source's AI faces called real at",
        f"most {_pct(bounds['unseen_ai_called_real'])}, its real faces called AI at most "
        f"{_pct(bounds['unseen_real_called_ai'])}.",
        "",
        "| left out | faces | real: called AI / real / uncertain | AI: called AI / real / uncertain "
        "| coverage | OOD-flagged | ROC-AUC |",
        "|---|---|---|---|---|---|---|",
    ]

    def shares(block) -> str:
        if not block:
            return "-"
        return " / ".join(_pct(block[v]) for v in ("ai_generated", "real", "uncertain"))

    for source, fold in report["folds"].items():
        lines.append(
            f"| {source} | {fold['n']} | {shares(fold['real'])} | {shares(fold['ai'])} | "
            f"{_pct(fold['coverage'])} | {_pct(fold['ood_flagged'])} | {_num(fold['roc_auc'])} |"
        )
    summary = report["summary"]
    lines += [
        "",
        f"Over {summary['folds']} folds: real called AI {_pct(summary['mean_real_called_ai'])} on average, "
        f"{_pct(summary['worst_real_called_ai'])} at worst; AI called real "
        f"{_pct(summary['mean_ai_called_real'])} on average, "
        f"{_pct(summary['worst_ai_called_real'])} at worst; "
        f"mean coverage {_pct(summary['mean_coverage'])}; mean ROC-AUC {_num(summary['mean_roc_auc'])} "
        "(sources with both classes).",
        "",
    ]
    return lines


def _command(data_dir: str, folder: Path, head: str) -> str:
    """The command that made the model: the real one when run from the command line."""
    if sys.argv[1:2] == ["train"]:
        return " ".join(shlex.quote(a) for a in ["faceaudit", *sys.argv[1:]])
    return f"faceaudit train {shlex.quote(data_dir)} --model-out {shlex.quote(str(folder))} --head {head}"


def write_model_card(folder: Path, card: dict, metrics: dict, data_dir: str) -> None:
    embedding = card["embedding"]
    thresholds = card["thresholds"]
    calibration = metrics["validation"]["calibration"]
    lines = [
        f"# faceaudit model: {card['head']['kind']} head on {embedding['backbone']}",
        "",
        "Tells real face photographs from AI-generated faces. Output per image: calibrated P(AI-generated),",
        "its spread over Monte Carlo samples, predictive entropy, mutual information, an out-of-distribution",
        "score, and a verdict (`ai_generated`, `real`, `uncertain`).",
        "",
        "## How it was made",
        "",
        "```sh",
        _command(data_dir, folder, card["head"]["kind"]),
        "```",
        "",
        f"- faceaudit {card['faceaudit_version']}, {card['created_at']}",
        f"- embedding fingerprint `{embedding['fingerprint']}`: backbone `{embedding['backbone']}` "
        f"(weights sha256 `{embedding['weights_sha256'][:16]}...`), preprocessing {embedding['preprocess']}, "
        f"pooling {embedding['pooling']}, {embedding['dim']} dimensions",
        f"- head {card['head']['kind']} with {card['head']['params']}",
        "- augmentation: "
        + (
            f"{card['augmentation']['views']} views of each training image, {card['augmentation']['spec']}"
            if card.get("augmentation")
            else "none"
        ),
        f"- training data `{data_dir}`, sha256 of (content hash, label) pairs "
        f"`{card['training_data']['sha256']}`;",
        "  train / validation / test splits by content hash (70 / 15 / 15%)",
        "",
        "## Data",
        "",
        "| group / class | train | val | test |",
        "|---|---|---|---|",
    ]
    for key, counts in sorted(card["training_data"]["counts"].items()):
        lines.append(
            f"| {key} | {counts.get('train', 0)} | {counts.get('val', 0)} | {counts.get('test', 0)} |"
        )
    notes = Path(data_dir) / "README.md"
    if notes.is_file():
        lines += ["", f"The data folder's own notes (`{notes.name}`), quoted:", ""]
        lines += ["> " + line if line else ">" for line in notes.read_text().splitlines()]
    lines += [
        "",
        "## Results on the test split",
        "",
        *_metrics_table(metrics),
        "",
        f"Linear probe (logistic regression on the same vectors and splits): accuracy "
        f"{_pct(metrics['linear_probe']['accuracy'])}, ROC-AUC {_num(metrics['linear_probe']['roc_auc'])}, "
        f"ECE {_num(metrics['linear_probe']['ece'])}; per group: "
        + ", ".join(f"{g} {_pct(m['accuracy'])}" for g, m in metrics["linear_probe"]["groups"].items())
        + ".",
        "",
        *(_unseen_table(metrics["leave_one_source_out"]) if "leave_one_source_out" in metrics else []),
        "## Calibration and the uncertain band",
        "",
        f"- calibration: {calibration['method']} (validation ECE {calibration['before']['ece']:.3f} before, "
        f"{calibration['after']['ece']:.3f} after; NLL {calibration['before']['nll']:.3f} -> "
        f"{calibration['after']['nll']:.3f})",
        f"- verdict `ai_generated` when P(AI) >= {thresholds['ai']:.6f}; `real` when P(AI) <= "
        f"{thresholds['real']:.6f}; otherwise, or when the OOD score exceeds {thresholds['ood']:.3f}, "
        "`uncertain`",
        f"- chosen so that on the validation split at most {_pct(thresholds['max_real_called_ai'])} of "
        f"confidently judged real faces are called AI-generated and at most "
        f"{_pct(thresholds['max_ai_called_real'])} of confidently judged AI faces pass as real,",
        *_abstention_lines(card),
        "  with the highest coverage that allows",
        *_in_sample_table(metrics),
    ]
    write_text(folder / "README.md", "\n".join(lines) + "\n")


def _abstention_lines(card: dict) -> list[str]:
    abstention = card.get("abstention") or {}
    if not abstention.get("sources_left_out"):
        return []
    bounds = abstention["bounds"]
    return [
        f"  and so that, for each of {', '.join(abstention['sources_left_out'])} left out in turn, the model "
        f"trained without it calls at most {_pct(bounds['unseen_ai_called_real'])} of its AI faces real and "
        f"at most {_pct(bounds['unseen_real_called_ai'])} of its real faces AI,"
    ]


def _in_sample_table(metrics: dict) -> list[str]:
    """What the shipped thresholds do on each fold they were fitted to (in-sample, unlike the table above)."""
    fitted = metrics.get("validation", {}).get("abstention_in_sample")
    if not fitted or "sources" not in fitted:
        return []
    lines = [
        "",
        "The shipped thresholds on the folds they were fitted to (in-sample: the leave-one-source-out table",
        "above is the honest estimate for a new source) and on the validation split:",
        "",
        "| judged | real called AI | AI called real | coverage |",
        "|---|---|---|---|",
    ]
    rows = [
        *zip(fitted["sources"], fitted["unseen_folds"], strict=True),
        ("validation", fitted["validation"]),
    ]
    for name, rates in rows:
        real = _pct(rates["real"]["ai_generated"]) if rates["real"] else "-"
        ai = _pct(rates["ai"]["real"]) if rates["ai"] else "-"
        lines.append(f"| {name} | {real} | {ai} | {_pct(rates['coverage'])} |")
    return lines
