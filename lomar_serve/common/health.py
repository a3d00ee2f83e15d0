"""What liveness checks in every lomar HTTP service: that the process can still serve at all.

A process out of file descriptors (EMFILE: too many open collections, sockets or files) cannot accept a connection
or open a file, yet its event loop answers; its liveness probe must fail so that a supervisor restarts it.
"""
from __future__ import annotations

import os
import resource

from lomar_serve.common.errors import ServiceUnavailable


def check_descriptors() -> None:
    """Raises ServiceUnavailable (503) when this process cannot open one more file descriptor."""
    try:
        descriptor = os.open(os.devnull, os.O_RDONLY)
    except OSError as error:
        raise ServiceUnavailable(f"this process cannot open a file descriptor ({error.strerror}); restart it",
                                 retry_after_s=1) from error
    os.close(descriptor)


def raise_descriptor_limit() -> int:
    """Lift this process's soft limit on open files to its hard limit (the default soft limit is often 1024);
    returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft
