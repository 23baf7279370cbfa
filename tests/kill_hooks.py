"""SIGKILLs at known points of a faceaudit process, for the resume tests.

``install(folder)`` writes a ``sitecustomize.py`` into ``folder``; a faceaudit process
started with ``folder`` on its ``PYTHONPATH`` (and so the Ray workers it starts) then wraps
``io.atomic_write`` and kills itself where the environment says:

- ``FACEAUDIT_TEST_KILL_AFTER=NAME``: after the file ``NAME`` is renamed into place;
- ``FACEAUDIT_TEST_KILL_DURING=NAME``: inside its write (bytes in the temporary file);
- ``FACEAUDIT_TEST_KILL_AT_PARTS=FOLDER:COUNT:MARKER``: once ``COUNT`` files are in a folder
  named ``FOLDER``, the first process to see it (``MARKER`` is created exclusively, so one
  kill in all processes) kills itself, or with ``FACEAUDIT_TEST_KILL_GROUP=1`` the process
  group of the first process that loaded the hook (a driver started in its own session,
  with the Ray instance it started).

A kill at a hook lands after a known write, where a timer polling the folder lands anywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

HOOK = '''
import os, signal
from pathlib import Path
from faceaudit.files import io

_write = io.atomic_write


# The first process to load the hook (the driver) names its process group for the
# processes it starts, which inherit the environment (Ray's workers sit in other groups).
if os.environ.get("FACEAUDIT_TEST_KILL_GROUP") == "1":
    os.environ["FACEAUDIT_TEST_KILL_GROUP"] = str(os.getpgrp())


def _die():
    if os.environ.get("FACEAUDIT_TEST_KILL_GROUP"):
        os.killpg(int(os.environ["FACEAUDIT_TEST_KILL_GROUP"]), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def atomic_write(path, write):
    def write_then_die(tmp):
        write(tmp)
        _die()

    named = os.path.basename(str(path))
    _write(path, write_then_die if named == os.environ.get("FACEAUDIT_TEST_KILL_DURING") else write)
    if named == os.environ.get("FACEAUDIT_TEST_KILL_AFTER"):
        _die()
    parts = os.environ.get("FACEAUDIT_TEST_KILL_AT_PARTS")
    if parts:
        folder, count, marker = parts.split(":", 2)
        here = Path(path).parent
        if here.name == folder and len([p for p in here.iterdir() if not p.name.startswith(".")]) >= int(count):
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return
            _die()


io.atomic_write = atomic_write
'''


def install(folder: Path) -> dict:
    """Write the hook into ``folder``; returns the environment that loads it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(HOOK)
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))}
