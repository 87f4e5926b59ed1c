"""Child processes that end with their parent, however the parent ends."""

from __future__ import annotations

import ctypes
import os
import signal

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
