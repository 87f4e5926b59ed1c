"""Judging images with one model: the steps `score` runs on a folder and `ui` on an upload.

A `Scorer` is loaded once (weights, card, embedding spec, content id); every caller goes through the
same steps: embed what the store lacks, predict in chunks, find faces (and read each picture's size),
draw maps, assemble CSV rows.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from faceaudit.data.atomic import write_text
from faceaudit.data.decode import UnreadableImage, decode_image, shown_size
from faceaudit.data.nofollow import UnsafePath, read_regular
from faceaudit.data.records import ImageRecord, read_scanned
from faceaudit.embed.face_cells import PictureCells, keeping_cells, stored_cells
from faceaudit.embed.faces import FACE_CHECK, face_column
from faceaudit.embed.spec import EmbeddingSpec
from faceaudit.embed.store import FeatureStore
from faceaudit.flows.embed_flow import EmbedSummary, embed_records
from faceaudit.flows.models import resolve_model, spec_of
from faceaudit.flows.progress import progress_bar
from faceaudit.head.model import CARD_FILE, WEIGHTS_FILE, FaceauditModel, ModelError, read_files

PREDICT_CHUNK = 2048  # images whose vectors are scored together
CELLS_PER_BATCH = 256  # picture cells kept in the store at a time: a killed run keeps all but these

COLUMNS = [
    "path",
    "sha256",
    "verdict",
    "uncertain_reason",
    "p_ai",
    "p_ai_std",
    "entropy",
    "mutual_info",
    "ood_score",
    "nearest_family",
    "nearest_source",
    "nearest_similarity",
    "face",
    "width",
    "height",
    "occlusion_map",
    "faithfulness",
    "gradient_map",
    "gradient_faithfulness",
    "error",
    "model_id",
    "scored_at",
]

# Each explanation method's two columns: the map's path and its faithfulness score.
MAP_COLUMNS = {
    "occlusion": ("occlusion_map", "faithfulness"),
    "gradient": ("gradient_map", "gradient_faithfulness"),
}


_LOADED: dict[tuple, Scorer] = {}  # by folder and its files' size and mtime
_BY_ID: dict[str, Scorer] = {}  # the same scorers by model id: what a run's tasks ask for


def _rounded(value: float) -> float | str:
    """A figure for a cell: rounded, or empty where there is none (NaN never reaches an output)."""
    value = float(value)
    return round(value, 6) if math.isfinite(value) else ""


def images_to_map(readable: list[ImageRecord], predicted: dict[str, dict], explain: str) -> dict:
    """{hash: record} of the images `explain` asks maps for: every one ('all'), the ai_generated and
    uncertain ones ('flagged'), or none."""
    if explain == "none":
        return {}
    return {
        r.sha256: r
        for r in readable
        if explain == "all" or predicted[r.sha256]["verdict"] in ("ai_generated", "uncertain")
    }


def model_id(card: bytes, weights: bytes) -> str:
    """Short content hash of a model's weights and card: names the exact model in every row."""
    digest = hashlib.sha256(weights)
    digest.update(card)
    return digest.hexdigest()[:16]


def _kept_note(note: Path) -> str | None:
    """The faithfulness a map drawn earlier noted beside it ('' for none), or None when there is no
    sound note (missing, not a small regular file, not a number): the map is then drawn again."""
    try:
        text = read_regular(note, 64).decode("ascii").strip()
        if text:
            float(text)
    except (UnsafePath, UnicodeDecodeError, ValueError):
        return None
    return text if not text or math.isfinite(float(text)) else None


def picture_cells(readable: list[ImageRecord], store_dir: str | None = None) -> dict[str, PictureCells]:
    """{hash: cells} read from each readable picture itself: whether it shows a face (the `face`
    column) and its size as shown (`width`, `height`). An image that no longer decodes (its file
    changed since the scan) gets no entry and empty cells. With `store_dir`, cells the store keeps are
    read, and those found here are kept there."""
    side = FACE_CHECK["side"]
    unique = list({r.sha256: r for r in readable}.values())
    cells = stored_cells(store_dir, [r.sha256 for r in unique]) if store_dir else {}
    missing = [r for r in unique if r.sha256 not in cells]
    with (
        keeping_cells(store_dir) if store_dir and missing else nullcontext(lambda cells: None) as keep,
        progress_bar("finding faces", total=len(missing)) as advance,
    ):
        unkept: dict[str, PictureCells] = {}
        for record in missing:
            advance(1)
            try:
                data = read_scanned(record)
                image = decode_image(data, draft_size=(side, side))
            except UnreadableImage:
                continue
            found = PictureCells(face_column(image), *shown_size(data))
            cells[record.sha256] = unkept[record.sha256] = found
            if len(unkept) == CELLS_PER_BATCH:
                keep(unkept)
                unkept = {}
        keep(unkept)
    return cells


def smaller_than_input(row: dict, input_px: int) -> bool:
    """Whether a row's picture is under the backbone's input on its short side: it is enlarged on the
    way in, and a small copy's verdict moves more than a large one's (the model card measures it on
    halved copies), so an auditor should look for a larger copy."""
    return row["width"] != "" and min(row["width"], row["height"]) < input_px


@dataclass
class Maps:
    """What the map step made: {hash: {method: (map path relative to OUT, faithfulness)}}, and the
    reason for each image whose file changed after the scan (its row becomes `unreadable`)."""

    drawn: dict[str, dict[str, tuple[str, str]]]
    failed: dict[str, str]


NO_MAPS = Maps({}, {})


@dataclass(frozen=True)
class Scorer:
    """A model ready to judge images: loaded once, used for any number of folders or uploads."""

    folder: Path
    model: FaceauditModel
    spec: EmbeddingSpec
    ident: str

    @classmethod
    def load(cls, model_dir: str | Path | None) -> Scorer:
        """The model in `model_dir`, its files read once: the id and every verdict come from the same
        bytes."""
        folder = resolve_model(model_dir)
        card, weights = read_files(folder)
        model = FaceauditModel.from_files(folder, card, weights)
        return cls(folder, model, spec_of(model), model_id(card, weights))

    @classmethod
    def cached(cls, model_dir: str | Path | None) -> Scorer:
        """The scorer for `model_dir`, loaded once per process while its files stay the same (size and
        mtime, so asking does not re-read the weights): each upload and each dump of a night asks for
        it by path. A run's own tasks ask by id instead (`of_run`)."""
        folder = resolve_model(model_dir)
        files = [folder / WEIGHTS_FILE, folder / CARD_FILE]
        try:
            key = (str(folder.resolve()), *((f.stat().st_size, f.stat().st_mtime_ns) for f in files))
        except OSError:
            key = (str(folder), None)  # missing files: `load` gives the one-line reason
        if key not in _LOADED:
            _LOADED.clear()  # one model at a time: a long-lived server does not pile them up
            _BY_ID.clear()
            scorer = cls.load(folder)
            _LOADED[key] = _BY_ID[scorer.ident] = scorer
        return _LOADED[key]

    @classmethod
    def of_run(cls, model_dir: str | Path | None, ident: str) -> Scorer:
        """The scorer a run started with: the one already loaded in this process, or (a task in another
        process) the folder loaded again and refused if it no longer holds that model, so a run never
        decides with one model and records another."""
        if ident in _BY_ID:
            return _BY_ID[ident]
        scorer = cls.cached(model_dir)
        if scorer.ident != ident:
            raise ModelError(
                f"{scorer.folder} changed during this run (it held model {ident} when the run started, "
                f"{scorer.ident} now); run again to score with the new model"
            )
        return scorer

    def embed(
        self, records: list[ImageRecord], store_dir: str, input_dir: str, batch_size: int, workers: int
    ) -> EmbedSummary:
        """Embed what the store lacks; files found unreadable on the way are marked in `records`."""
        return embed_records(records, self.spec, store_dir, input_dir, batch_size, workers)

    def predict(self, hashes: Sequence[str], store_dir: str, samples: int | None) -> dict[str, dict]:
        """Verdict and figures per stored image hash, in chunks so memory stays flat for any dump.
        A hash whose vector is no longer readable (its store file found damaged) is left out: the
        caller embeds it again."""
        store = FeatureStore(store_dir, self.spec.fingerprint)
        predicted: dict[str, dict] = {}
        for start in range(0, len(hashes), PREDICT_CHUNK):
            found, vectors = store.get_available(hashes[start : start + PREDICT_CHUNK])
            chunk = [h for h, ok in zip(hashes[start : start + PREDICT_CHUNK], found, strict=True) if ok]
            if not chunk:
                continue
            scores = self.model.score(vectors[found], samples)
            p = scores.prediction
            for i, digest in enumerate(chunk):
                predicted[digest] = {
                    "verdict": str(scores.verdict[i]),
                    "uncertain_reason": str(scores.reason[i]),
                    "p_ai": _rounded(p.p_ai[i]),
                    "p_ai_std": _rounded(p.p_ai_std[i]),
                    "entropy": _rounded(p.entropy[i]),
                    "mutual_info": _rounded(p.mutual_info[i]),
                    "ood_score": _rounded(scores.ood_score[i]),
                    "nearest_family": str(scores.nearest_family[i]),
                    "nearest_source": str(scores.nearest_source[i]),
                    "nearest_similarity": _rounded(scores.nearest_similarity[i]),
                }
        return predicted

    def draw_maps(
        self,
        readable: list[ImageRecord],
        predicted: dict[str, dict],
        explain: str,
        methods: Sequence[str],
        out: Path,
        samples: int | None,
        baseline: str,
    ) -> Maps:
        """Draw maps for the chosen images under `out`/maps, keeping any already drawn for this model.
        A file that changed since the scan gets no map and its reason in `failed`."""
        wanted = images_to_map(readable, predicted, explain)
        done: dict[str, dict[str, tuple[str, str]]] = {}
        todo = []
        for digest, record in wanted.items():
            for method in methods:
                name = method if method == "gradient" else f"{method}-{baseline}"
                rel = f"maps/{digest[:16]}-{self.ident[:8]}-{name}.png"
                faith = _kept_note(out / (rel + ".json")) if (out / rel).is_file() else None
                if faith is not None:  # already drawn for this image and model
                    done.setdefault(digest, {})[method] = (rel, faith)
                else:
                    todo.append((digest, record, method, rel))
        failed: dict[str, str] = {}
        if not todo:
            return Maps(done, failed)
        from faceaudit.explain.render import render_map
        from faceaudit.flows.explaining import Explainer

        explainer = Explainer(self.model, self.spec, baseline=baseline, samples=samples)
        with progress_bar("explaining", total=len(todo)) as advance:
            for digest, record, method, rel in todo:
                advance(1)
                if digest in failed:
                    continue
                try:
                    image = decode_image(read_scanned(record))
                except UnreadableImage as exc:
                    failed[digest] = str(exc)
                    continue
                fitted, result = explainer.explain(image, method)
                render_map(fitted, result, out / rel, predicted[digest]["verdict"])
                faith = "" if result.faithfulness is None else f"{result.faithfulness:.6f}"
                write_text(out / (rel + ".json"), faith)
                done.setdefault(digest, {})[method] = (rel, faith)
        return Maps(done, failed)

    def rows(
        self,
        records: list[ImageRecord],
        predicted: dict[str, dict],
        maps: Maps,
        pictures: dict[str, PictureCells],
        scored_at: str,
    ) -> list[dict]:
        """One CSV row per file, in `records` order; unreadable files carry their reason, and so do
        files that changed after the scan (whatever their hash was judged, the file is no longer it)."""
        rows = []
        for record in records:
            if record.ok and record.sha256 in maps.failed:
                record.error = maps.failed[record.sha256]
            row = {
                "path": record.rel,
                "sha256": record.sha256 or "",
                "model_id": self.ident,
                "scored_at": scored_at,
            }
            if record.ok:
                cells = pictures.get(record.sha256)
                row.update(
                    predicted[record.sha256],
                    **(cells._asdict() if cells else dict.fromkeys(PictureCells._fields, "")),
                )
                drawn = maps.drawn.get(record.sha256, {})
                for method, (map_column, faith_column) in MAP_COLUMNS.items():
                    rel, faith = drawn.get(method, ("", ""))
                    # a number, not text: a negative score is not a formula to neutralise in the CSV
                    row[map_column], row[faith_column] = rel, float(faith) if faith else ""
                row["error"] = ""
            else:
                blank = {column: "" for column in COLUMNS[3:-3]}
                row.update(blank, verdict="unreadable", error=record.error)
            rows.append(row)
        return rows

    def describe(self) -> dict:
        """The model's provenance, as run.json records it."""
        return {
            "id": self.ident,
            "folder": str(self.folder),
            "head": self.model.head.kind,
            "trained": self.model.info.get("created_at"),
            "training_data_sha256": self.model.info.get("training_data", {}).get("sha256"),
        }
