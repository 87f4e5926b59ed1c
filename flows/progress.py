"""Progress bars for long work, shown on stderr when a person is watching and silent otherwise.

Tasks ask for a bar with `progress_bar(...)`; the command line decides whether bars are drawn, so flows
and tasks keep plain signatures (Prefect parameters cannot carry a live display).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

_enabled: bool | None = None


def enable(on: bool | None) -> None:
    """Force bars on or off; None means: only when stderr is a terminal."""
    global _enabled
    _enabled = on


@contextlib.contextmanager
def progress_bar(description: str, total: int, unit: str = "images") -> Iterator[Callable[[int], None]]:
    """Yield an `advance(n)` callable; draws a bar with rate and time left when enabled."""
    show = _enabled if _enabled is not None else sys.stderr.isatty()
    if not show or total <= 0:
        yield lambda n=1: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(description, total=total, rate="")

        def advance(n: int = 1) -> None:
            bar.advance(task, n)
            speed = bar.tasks[0].speed
            if speed:
                bar.update(task, rate=f"{speed:.1f} {unit}/s")

        yield advance
