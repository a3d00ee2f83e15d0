"""Child processes that never outlive the gateway."""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """preexec_fn: ask the kernel for SIGTERM when the parent goes (Linux), and leave at once if it already has.

    The kernel sends it when the *thread* that forked the child exits: start children from long-lived threads.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:
        os._exit(1)
