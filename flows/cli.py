"""The `faceaudit` command line. Heavy libraries (torch, transformers, Prefect) load inside commands,
so `faceaudit --help` answers at once."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from flows.defaults import default_store_dir

app = typer.Typer(
    name="faceaudit",
    help="Tell real face photographs from AI-generated faces, with calibrated doubt and a picture of why.",
    no_args_is_help=True,
    invoke_without_command=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    """Tell real face photographs from AI-generated faces, with calibrated doubt and a picture of why.

    Typical use: `faceaudit embed DUMP` fills the feature store; later stages train heads and score
    folders from it. Every command takes --help.
    """
    if version:
        from data.version import code_version

        typer.echo(f"faceaudit {code_version()}")
        raise typer.Exit(0)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line reason to stderr and return the exit to raise."""
    typer.echo(f"faceaudit: error: {message}", err=True)
    return typer.Exit(code)


def _existing_dir(path: Path, what: str) -> Path:
    if not path.exists():
        raise fail(f"{what} {path} does not exist")
    if not path.is_dir():
        raise fail(f"{what} {path} is not a folder")
    return path


StoreOption = Annotated[
    Path | None,
    typer.Option("--store", help="Feature store folder [default: $FACEAUDIT_STORE or the user data dir]."),
]
ProgressOption = Annotated[
    bool | None,
    typer.Option("--progress/--no-progress", help="Draw progress bars [default: when stderr is a terminal]."),
]
PrefectOption = Annotated[
    bool | None,
    typer.Option(
        "--prefect/--no-prefect",
        help="Run as a recorded Prefect flow run [default: only when PREFECT_API_URL names a server; "
        "without one Prefect would start a temporary server, about 7 s per run].",
    ),
]


@app.command()
def embed(
    input_dir: Annotated[Path, typer.Argument(help="Folder of images, walked recursively.")],
    store: StoreOption = None,
    backbone: Annotated[
        str, typer.Option(help="'dinov2-s14' (built in), a local transformers folder, or a hub id.")
    ] = "dinov2-s14",
    preprocess: Annotated[
        str, typer.Option(help="'crop': native pixels, center crop; 'resize': whole image to the input size.")
    ] = "crop",
    pooling: Annotated[str, typer.Option(help="'cls', 'mean' (of patch tokens) or 'cls+mean'.")] = "cls+mean",
    layers: Annotated[
        str | None, typer.Option(help="Layers to pool, e.g. 4,8,12 [default: thirds of the depth].")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=1024, help="Images per forward pass.")] = 16,
    workers: Annotated[int, typer.Option(min=0, max=64, help="DataLoader processes decoding ahead.")] = 1,
    prefect: PrefectOption = None,
    progress: ProgressOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Embed every image under INPUT_DIR into the feature store; images already stored are skipped."""
    from embed.pooling import parse_layers

    _existing_dir(input_dir, "input folder")
    try:
        layer_list = list(parse_layers(layers))
    except ValueError as exc:
        raise fail(str(exc)) from None
    _check_choice(preprocess, ("crop", "resize"), "--preprocess")
    _check_choice(pooling, ("cls", "mean", "cls+mean"), "--pooling")
    store_dir = store or default_store_dir()

    from embed.backbone import BackboneError
    from flows import progress as progress_mod
    from flows.embed_flow import embed_flow
    from flows.orchestration import run_flow

    progress_mod.enable(progress)
    try:
        summary = run_flow(
            embed_flow,
            prefect,
            input_dir=str(input_dir),
            store_dir=str(store_dir),
            backbone=backbone,
            preprocess=preprocess,
            pooling=pooling,
            layers=layer_list,
            batch_size=batch_size,
            workers=workers,
        )
    except (BackboneError, ValueError) as exc:
        raise fail(str(exc)) from None
    if json_out:
        typer.echo(json.dumps(summary, indent=2))
    else:
        _print_embed_summary(summary)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Where the sample images and the demo store go.")] = Path(
        "demo-out"
    ),
    progress: ProgressOption = None,
) -> None:
    """Run the pipeline on sample images the project draws itself (no dataset needed)."""
    from flows import progress as progress_mod
    from flows.demo import write_sample_folder
    from flows.embed_flow import embed_flow

    progress_mod.enable(progress)
    images = write_sample_folder(out / "images")
    typer.echo(f"sample images: {images}")
    summary = embed_flow.fn(str(images), str(out / "store"))
    _print_embed_summary(summary)


def _check_choice(value: str, choices: tuple[str, ...], flag: str) -> None:
    if value not in choices:
        raise fail(f"{flag} must be one of {', '.join(choices)}, not {value!r}")


def _print_embed_summary(summary: dict) -> None:
    unreadable = summary["unreadable"]
    typer.echo(
        f"{summary['files']} files: {summary['new']} new, {summary['already_stored']} already stored, "
        f"{summary['duplicates']} duplicates, {len(unreadable)} unreadable; "
        f"{summary['images_per_second']:.1f} images/s, {summary['seconds']:.1f} s in all"
    )
    typer.echo(f"store: {summary['store']} (fingerprint {summary['fingerprint'][:16]})")
    for rel, reason in unreadable[:20]:
        typer.echo(f"  unreadable: {_printable(rel)}: {reason}")
    if len(unreadable) > 20:
        typer.echo(f"  ... and {len(unreadable) - 20} more (use --json for all)")


def _printable(path: str) -> str:
    """A path safe to print on one line, whatever bytes its name has."""
    return os.fsencode(path).decode("utf-8", "backslashreplace").encode("unicode_escape").decode("ascii")


def main() -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("faceaudit: interrupted; committed work is kept, re-run to resume", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
