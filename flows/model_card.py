"""The README written into every model folder: what the model is, what it was trained on, how it does
per source, on rescaled copies and on families it never saw, and what that means in plain words.

Every line comes from model.json and metrics.json, so a retrain rewrites all of it: nothing in a card is
written by hand.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from faceaudit.data.atomic import write_text
from faceaudit.flows.folds import worst_folds
from faceaudit.head.metrics import wilson_interval


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _shares(block) -> str:
    """'called AI / real / uncertain' shares of one class, or '-' when the class is absent."""
    if not block:
        return "-"
    return " / ".join(_pct(block[v]) for v in ("ai_generated", "real", "uncertain"))


def _families_lines(families: dict) -> list[str]:
    lines = ["| kind | family or collection | sources |", "|---|---|---|"]
    for kind, title in (("ai", "generator family"), ("real", "real collection")):
        for name, sources in sorted(families.get(kind, {}).items()):
            lines.append(f"| {title} | {name} | {', '.join(sources)} |")
    lines += [
        "",
        "A source listed nowhere is a family or collection of its own. A data folder declares its own in",
        "`families.json` (see `data/families.py`).",
    ]
    return lines


def _test_table(metrics: dict) -> list[str]:
    """Per source: how its real and AI faces were judged, with the usual classification figures."""
    lines = [
        "| scope | n | real: called AI / real / uncertain | AI: called AI / real / uncertain | coverage "
        "| accuracy at 0.5 | ROC-AUC | ECE |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in [("all", metrics), *metrics.get("groups", {}).items()]:
        verdicts = m.get("verdicts") or {}
        lines.append(
            f"| {name} | {m['n']} | {_shares(verdicts.get('real'))} | {_shares(verdicts.get('ai'))} | "
            f"{_pct(m['coverage'])} | {_pct(m['accuracy'])} | {_num(m['roc_auc'])} | {_num(m['ece'])} |"
        )
    return lines


FOLD_TEXT = {
    "leave_one_family_out": (
        "Generator families never trained on",
        "every AI source of the family at once: a StyleGAN source left out alone would still have its "
        "cousins in training",
    ),
    "leave_one_real_collection_out": (
        "Real collections never trained on",
        "every real photo of the collection",
    ),
    "leave_one_source_out": ("Sources never trained on", "one source folder, both classes"),
}


def _folds_table(key: str, report: dict) -> list[str]:
    title, how = FOLD_TEXT[key]
    lines = [
        f"## {title}",
        "",
        f"For each fold the same recipe was trained without what it leaves out ({how}). Its band was",
        "fitted on its own validation split, as the shipped model's is, and it judged every image left out:",
        "what a user sees on a family or collection nobody trained on.",
        "",
        "| left out | sources | faces | real: called AI / real / uncertain "
        "| AI: called AI / real / uncertain | coverage | ROC-AUC |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, fold in report["folds"].items():
        lines.append(
            f"| {name} | {', '.join(fold.get('sources', []))} | {fold['n']} | {_shares(fold['real'])} | "
            f"{_shares(fold['ai'])} | {_pct(fold['coverage'])} | {_num(fold['roc_auc'])} |"
        )
    summary = report["summary"]
    worst = worst_folds(summary)
    lines += ["", f"Headline: {'; '.join(worst)}. Mean coverage {_pct(summary['mean_coverage'])}.", ""]
    return lines


def _robustness_table(metrics: dict) -> list[str]:
    perturbations = metrics.get("perturbations", {})
    if not perturbations:
        return []
    names = list(perturbations)
    groups = sorted(next(iter(perturbations.values()))["groups"])
    lines = [
        "## Rescaled copies",
        "",
        "The test split's images rescaled in memory; the share whose verdict stayed the same (the verdict",
        "should follow the face, not the file's size):",
        "",
        "| source | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
        "| all | " + " | ".join(_pct(perturbations[n]["verdict_agreement"]) for n in names) + " |",
    ]
    for group in groups:
        cells = [_pct(perturbations[n]["groups"][group]["verdict_agreement"]) for n in names]
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    return [*lines, "", *_accused_when_rescaled(metrics, names, groups)]


def _real_called_ai(figures: dict) -> float | None:
    """The share of a block's real photos called AI (None when it holds no real photo)."""
    real = figures.get("verdicts", {}).get("real") or {}
    return real["ai_generated"] if real.get("n") else None


def _accused_when_rescaled(metrics: dict, names: list[str], groups: list[str]) -> list[str]:
    """The costliest error under rescaling: real photos called AI, per real source, beside the share
    on the copies as they are. A rescale that keeps most verdicts may still accuse."""
    real_groups = [g for g in groups if _real_called_ai(metrics["groups"][g]) is not None]
    if not real_groups:
        return []
    perturbations = metrics["perturbations"]

    def row(label: str, as_they_are: dict, rescaled: list[dict]) -> str:
        return f"| {label} | " + " | ".join(_pct(_real_called_ai(b)) for b in [as_they_are, *rescaled]) + " |"

    lines = [
        "Real photos called AI, as a share of each source's real photos:",
        "",
        "| source | as they are | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
        row("all", metrics, [perturbations[n] for n in names]),
    ]
    for group in real_groups:
        lines.append(row(group, metrics["groups"][group], [perturbations[n]["groups"][group] for n in names]))
    return [*lines, ""]


def _limits(metrics: dict) -> list[str]:
    """What the figures above mean for a user, in words, written from the figures."""
    lines = ["## What this means", ""]
    families = metrics.get("families", {})
    ai_families = ", ".join(sorted(families.get("ai", {}))) or "the AI sources of its training data"
    lines.append(
        f'- `real` means "no sign of the generator families this model was trained on" ({ai_families}), '
        'not "proven to be a photograph".'
    )
    family = metrics.get("leave_one_family_out", {}).get("summary")
    if family and family["worst_ai_called_real"] is not None:
        lines.append(
            f"- A generator family it never saw can pass as real: with {family['worst_ai_called_real_fold']} "
            f"left out of training, {_pct(family['worst_ai_called_real'])} of its faces were called real."
        )
    collection = metrics.get("leave_one_real_collection_out", {}).get("summary")
    if collection and collection["worst_real_called_ai"] is not None:
        lines.append(
            "- Real photos of a style it never saw can be accused: with "
            f"{collection['worst_real_called_ai_fold']} left out of training, "
            f"{_pct(collection['worst_real_called_ai'])} of its photos were called AI. Look at "
            "`nearest_family` before acting: a studio portrait called AI because it looks like a "
            "generator's studio faces is a style match, not evidence."
        )
    verdicts = metrics.get("verdicts") or {}
    real, ai = verdicts.get("real") or {}, verdicts.get("ai") or {}
    lines += [
        f"- On images like its training data (the test split) it judges {_pct(metrics['coverage'])} of faces "
        f"and leaves the rest `uncertain`; {_pct(real.get('ai_generated'))} of the real faces were called AI "
        f"and {_pct(ai.get('real'))} of the AI faces called real.",
        *_how_sure(metrics),
        *_worst_rescale(metrics),
        "- A verdict is evidence for a reviewer, never the decision itself.",
        "",
    ]
    return lines


def _counted(block: dict, verdict: str) -> tuple[int, int]:
    """(how many, of how many) of one class's faces got `verdict`, from its share and count."""
    return round(block[verdict] * block["n"]), block["n"]


def _how_sure(metrics: dict) -> list[str]:
    """How far the costliest figures could move on more images like the test split's (95% intervals):
    the real source with the most photos accused, the one whose few photos leave the widest doubt, and
    the AI faces called real."""
    real_sources = [
        (_counted(block, "ai_generated"), group)
        for group, figures in sorted(metrics.get("groups", {}).items())
        if (block := (figures.get("verdicts") or {}).get("real") or {}).get("n")
    ]
    ai = (metrics.get("verdicts") or {}).get("ai") or {}
    if not real_sources or not ai.get("n"):
        return []

    def said(counted: tuple[int, int], group: str) -> str:
        low, high = wilson_interval(*counted)
        return f"{counted[0]} of {counted[1]} from {group} ({_pct(low)} to {_pct(high)})"

    worst = max(real_sources, key=lambda item: (item[0][0] / item[0][1], wilson_interval(*item[0])[1]))
    widest = max(real_sources, key=lambda item: wilson_interval(*item[0])[1])
    accused = said(*worst) + ("" if widest == worst else f", and {said(*widest)}")
    missed = _counted(ai, "real")
    low, high = wilson_interval(*missed)
    return [
        "- Each figure rests on few images: read a per-source share as a direction, not a guarantee. "
        "In brackets, where the share could lie on more images like these (95% interval). Real photos "
        f"called AI: {accused}. AI faces called real: {missed[0]} of {missed[1]} "
        f"({_pct(low)} to {_pct(high)})."
    ]


def _worst_rescale(metrics: dict) -> list[str]:
    """The rescaled copy and real source on which the most real photos were accused, in words."""
    worst = max(
        (
            (share, name, group)
            for name, block in (metrics.get("perturbations") or {}).items()
            for group, figures in block["groups"].items()
            if (share := _real_called_ai(figures)) is not None
        ),
        default=None,
    )
    if worst is None or worst[0] <= 0:
        return []
    share, name, group = worst
    return [
        f"- Resizing can tip a verdict: on `{name}` copies {_pct(share)} of {group}'s real photos were "
        "called AI (see Rescaled copies). Judge the largest copy of an image you have."
    ]


def _ood_floor(validation: dict) -> str:
    floor = validation.get("ood_floor_from_folds")
    if floor is None:
        return ""
    return (
        f", and is never below {floor:.3f}, the OOD score that only 1% of the faces left out in the "
        "folds above exceed (OOD is for what is not a face photo, not for a family never seen)"
    )


def _validation_line(band: dict) -> list[str]:
    verdicts = band.get("verdicts")
    if not verdicts:
        return []
    real, ai = verdicts.get("real") or {}, verdicts.get("ai") or {}
    return [
        f"- on validation: coverage {_pct(band['coverage'])}, real faces called AI "
        f"{_pct(real.get('ai_generated'))}, AI faces called real {_pct(ai.get('real'))}"
    ]


def _command(data_dir: str, folder: Path, head: str) -> str:
    """The command that made the model: the real one when run from the command line."""
    if sys.argv[1:2] == ["train"]:
        return " ".join(shlex.quote(a) for a in ["faceaudit", *sys.argv[1:]])
    return f"faceaudit train {shlex.quote(data_dir)} --model-out {shlex.quote(str(folder))} --head {head}"


def _probe_reads(card: dict) -> str:
    if (card.get("probe") or {}).get("reads") == "texture":
        return "the texture (patch-spread) columns of the same vectors"
    return "the same vectors"


def write_model_card(folder: Path, card: dict, metrics: dict, data_dir: str) -> None:
    embedding = card["embedding"]
    thresholds = card["thresholds"]
    validation = metrics["validation"]
    calibration = validation["calibration"]
    band = validation["uncertain_band_on_validation"]
    bounds = (card.get("abstention") or {}).get("bounds", {})
    lines = [
        f"# faceaudit model: {card['head']['kind']} head on {embedding['backbone']}",
        "",
        "Tells real face photographs from AI-generated faces. Output per image: calibrated P(AI-generated),",
        "its spread over Monte Carlo samples, predictive entropy, mutual information, an out-of-distribution",
        "score, the training family and source it looks most like, and a verdict (`ai_generated`, `real`,",
        "`uncertain`).",
        "",
        *_limits(metrics),
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
        "- view directions projected out of every vector before the head, probe, OOD detector and "
        + (
            f"nearest-source classifier: {card['projection']['directions']} (the directions along which the "
            "training views move vectors, head/projection.py)"
            if card.get("projection")
            else "nearest-source classifier: none"
        ),
        f"- training data `{data_dir}`, sha256 of (content hash, label) pairs "
        f"`{card['training_data']['sha256']}`;",
        "  train / validation / test splits by content hash (70 / 15 / 15%)",
        "",
        "## Data",
        "",
        "| source / class | train | val | test |",
        "|---|---|---|---|",
    ]
    for key, counts in sorted(card["training_data"]["counts"].items()):
        lines.append(
            f"| {key} | {counts.get('train', 0)} | {counts.get('val', 0)} | {counts.get('test', 0)} |"
        )
    lines += ["", "Families:", "", *_families_lines(metrics.get("families", {}))]
    lines += [
        "",
        "## Results on the test split",
        "",
        *_test_table(metrics),
        "",
        f"Linear probe, the AI verdicts' second opinion, a logistic regression on {_probe_reads(card)} "
        "with the same splits: accuracy "
        f"{_pct(metrics['linear_probe']['accuracy'])}, ROC-AUC {_num(metrics['linear_probe']['roc_auc'])}, "
        f"ECE {_num(metrics['linear_probe']['ece'])}; per source: "
        + ", ".join(f"{g} {_pct(m['accuracy'])}" for g, m in metrics["linear_probe"]["groups"].items())
        + ".",
        "",
        *_robustness_table(metrics),
    ]
    for key in FOLD_TEXT:
        if key in metrics:
            lines += _folds_table(key, metrics[key])
    lines += [
        "## Calibration and the uncertain band",
        "",
        f"- calibration: {calibration['method']} (validation ECE {calibration['before']['ece']:.3f} before, "
        f"{calibration['after']['ece']:.3f} after; NLL {calibration['before']['nll']:.3f} -> "
        f"{calibration['after']['nll']:.3f})",
        f"- verdict `ai_generated` when P(AI) >= {thresholds['ai']:.4f}; `real` when P(AI) <= "
        f"{thresholds['real']:.4f} (each with its second opinion, below); otherwise `uncertain` (`band`, "
        "`disagree`, `unlike_real`); `uncertain` (`ood`) whatever P(AI) "
        f"says when the OOD score exceeds {thresholds['ood']:.3f}",
        f"- fitted on the validation split only: the OOD threshold flags {_pct(band.get('ood_flagged'))} of "
        f"it (bound {_pct(bounds.get('ood_flagged'))}){_ood_floor(validation)}; a `real` verdict needs the "
        "face to look like the known real collections at least as much as all but "
        f"{_pct(bounds.get('real_held_back'))} of the "
        f"validation real photos do (nearest-source probability >= {thresholds.get('looks_real', 0):.4f}), "
        f"and an `ai_generated` verdict needs a linear probe on {_probe_reads(card)} to agree as much "
        "as it does "
        f"for all but {_pct(bounds.get('ai_held_back'))} of the validation AI faces (probe P(AI) >= "
        f"{thresholds.get('probe_agrees', 0):.4f}); "
        f"then the widest band in which at most {_pct(bounds.get('real_called_ai'))} of all real faces are "
        f"called AI (and at most {_pct(bounds.get('real_called_ai_per_source'))} within any one real "
        f"source) and at most {_pct(bounds.get('ai_called_real'))} of all AI faces are called real",
        *_validation_line(band),
        "- the left-out folds above are measured, not fitted to: no band on these features keeps an unseen "
        "family in check without giving up nearly every verdict",
    ]
    write_text(folder / "README.md", "\n".join(lines) + "\n")
