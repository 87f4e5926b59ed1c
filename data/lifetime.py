"""What outlives a process and what does not: children that end with it, folders removed after it,
however it ends."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask Linux to kill this process when the one that started it dies, however it dies (a kill -9
    runs no clean-up: DataLoader workers and temporary Prefect servers would linger until killed by
    hand). Call it in the child: a DataLoader worker's init, or a Popen's preexec_fn. Elsewhere a no-op."""
    libc = ctypes.CDLL(None, use_errno=True)  # the symbols already loaded: libc's among them
    if not hasattr(libc, "prctl"):
        return
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the parent died before the request took effect
        os._exit(1)


# Run by a small process of its own: wait until every copy of the pipe's write end is closed (the
# process that started it ended, however it ended), then delete the folder.
_JANITOR = "import shutil, sys\nsys.stdin.buffer.read()\nshutil.rmtree(sys.argv[1], ignore_errors=True)\n"
_kept_open: list[int] = []  # write ends held for the life of this process


def remove_when_this_process_ends(folder: Path) -> None:
    """Have `folder` deleted once this process has ended, even by kill -9: a janitor process (in its
    own session, so a signal to this process group spares it) waits on a pipe only this process, and
    the children it forks, hold open."""
    read_end, write_end = os.pipe()  # not inherited by programs this process starts (close-on-exec)
    try:
        subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _JANITOR, str(folder)],
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        os.close(read_end)
    _kept_open.append(write_end)
