"""Picking and copying benchmark images, shared by the bench scripts."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from faceaudit.data.records import ImageRecord, scan

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def data_folder(text: str) -> Path:
    """argparse type of `--data`: a folder that exists, or a one-line reason naming it."""
    folder = Path(text)
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"no data folder at {folder}; pass --data")
    return folder


def bench_parser(doc: str) -> argparse.ArgumentParser:
    """A bench script's parser: its docstring as `--help`, and `--data`, the labelled images it reads
    (SOURCE/CLASS/*; ../shared/data beside the checkout unless given)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data", type=data_folder, default=str(SHARED_DATA), help="labelled images (default: %(default)s)"
    )
    return parser


def first_images(folder: Path, count: int = 0) -> list[ImageRecord]:
    """Readable images under `folder` in content-hash order (a fixed, source-mixed sample); 0 means all."""
    records = sorted((r for r in scan(folder) if r.ok), key=lambda r: r.sha256)
    return records[:count] if count else records


def copy_images(records: list[ImageRecord], folder: Path) -> Path:
    """Copy `records` into `folder`, keeping their relative paths (and so their labels)."""
    for record in records:
        target = folder / record.rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(record.path, target)
    return folder
