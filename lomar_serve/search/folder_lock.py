"""One gateway at a time per folder of embedded collections.

Embedded collections (SQLite files and usearch indexes, embedded.py) are read into the memory of the process that
opens them: a second gateway on the same folder would keep indexes of its own, and each would miss what the other
adds, silently. So a gateway holds an exclusive lock on FOLDER/gateway.lock (fcntl.flock: released by the kernel
when the process ends, however it ends) for as long as it serves the folder, and a second one refuses to start,
pointing at pgvector (collections several gateways share) and at the settings that give each gateway its own
folder or none. flock works between processes of one machine; on network file systems it depends on the server
(NFSv4 and recent Linux clients do lock): a fleet shares collections through pgvector, not a shared folder.
"""
from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path
from typing import IO

from lomar_serve.search.errors import CollectionsLocked

LOCK_FILE_NAME = "gateway.lock"


class FolderLock:
    """The exclusive right of this process to the embedded collections in `folder`."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / LOCK_FILE_NAME
        self._file: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self) -> None:
        """Take the lock (nothing if held already).

        Raises:
            CollectionsLocked: another process holds it (its pid and host in the message).
            OSError: the folder or the lock file cannot be created or opened.
        """
        if self._file is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held open while the lock is held
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise CollectionsLocked(
                f"the collections folder {self.path.parent} is held by another gateway ({holder}): embedded "
                "collections serve one gateway at a time. Share collections between gateways with "
                "LOMAR_SEARCH_ENGINE=pgvector and LOMAR_SEARCH_PG_URL (docs/search.md#collections-in-a-fleet), "
                "or give this gateway a folder of its own (LOMAR_SEARCH_DIR) or none (LOMAR_SEARCH_ENGINE=none)"
            ) from None
        except OSError:
            handle.close()
            raise
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor releases the flock
            self._file = None
