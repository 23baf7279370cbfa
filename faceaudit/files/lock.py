"""One writer per audit folder: ``faceaudit.lock`` names the process that holds it.

A stage (or a whole audit) takes the lock before it writes anything and gives it back when
it ends. A second process is refused at once with the holder's pid, host and start time,
instead of failing later or recording the other's files under its own settings. A lock
whose process is gone (killed, crashed; same host) is stale and taken over. Within one
process the lock is re-entrant: ``faceaudit audit`` holds it around stages that take it
again.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path

from faceaudit.files.io import StageFileError

LOCK = "faceaudit.lock"
_held: dict[Path, int] = {}  # folder -> depth, in this process


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def _holder(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def folder_lock(folder: str | Path):
    """Hold ``folder``'s lock for the block.

    Raises:
        StageFileError: another live process holds it (named, with what to do).
    """
    folder = Path(folder).resolve()
    if _held.get(folder):
        _held[folder] += 1
        try:
            yield
        finally:
            _held[folder] -= 1
        return
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(path)
            if holder is None:  # being written this instant, or torn: look again
                time.sleep(0.05)
                holder = _holder(path)
            if holder is not None and holder.get("host") == me["host"] and not _alive(int(holder.get("pid", -1))):
                path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            who = (f"process {holder['pid']} on {holder['host']} since {holder['since']}" if holder
                   else "another process")
            raise StageFileError(f"{folder} is in use by {who} ({path}); wait for it to finish, or remove the lock "
                                 "file if that process is gone") from None
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    _held[folder] = 1
    # A process killed inside an atomic write leaves its temporary file (``io.atomic_write``:
    # ``.NAME.XXXX.tmp``; nothing runs on SIGKILL). Only the lock holder writes here, so any
    # such file now is a dead writer's: remove it.
    for stale in folder.rglob(".*.tmp"):
        stale.unlink(missing_ok=True)
    try:
        yield
    finally:
        _held.pop(folder, None)
        if (_holder(path) or {}).get("pid") == me["pid"]:
            path.unlink(missing_ok=True)
