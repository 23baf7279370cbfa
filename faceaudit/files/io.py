"""Atomic writes and readable errors: a killed run never leaves a half-written output, and a
broken file is reported by name with what to do about it."""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

_MODE = 0o666  # what a plain open() would create, before the umask


class StageFileError(ValueError):
    """A stage file is missing, truncated or unreadable; the message says which stage to redo."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file in ``path``'s folder, fsync it, give it the
    permissions a plain ``open()`` would (``mkstemp`` creates 0600), then rename it over
    ``path``. Any failure removes the temporary file and leaves ``path`` as it was.

    Raises:
        StageFileError: the folder cannot be created or written (naming it).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise StageFileError(f"cannot write {path}: {err.strerror or err}") from None
    tmp = Path(name)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, _MODE & ~_umask())
        os.replace(tmp, path)
    except IsADirectoryError:
        tmp.unlink(missing_ok=True)
        raise StageFileError(f"cannot write {path}: it is a folder") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_parquet(path: str | Path, frame) -> None:
    """A DataFrame to Parquet, atomically (no index)."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    atomic_write_bytes(path, buffer.getvalue())


def write_netcdf(path: str | Path, data) -> None:
    """An xarray Dataset or arviz InferenceData to netCDF (h5netcdf), atomically."""
    atomic_write(path, lambda tmp: data.to_netcdf(str(tmp), engine="h5netcdf"))


def _redo(stage: str | None) -> str:
    return f"; rerun that stage with `faceaudit audit --force {stage}`" if stage else ""


def read_parquet(path: str | Path, *, stage: str | None = None):
    """Read a Parquet file; a missing or broken one is a ``StageFileError`` naming it and the
    stage that writes it."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise StageFileError(f"{path} does not exist{_redo(stage)}")
    try:
        return pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several types for a bad file
        raise StageFileError(f"{path} is not a readable Parquet file ({type(err).__name__}: {err}){_redo(stage)}") from None


def read_json(path: str | Path, *, stage: str | None = None):
    path = Path(path)
    if not path.is_file():
        raise StageFileError(f"{path} does not exist{_redo(stage)}")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise StageFileError(f"{path} is not readable JSON ({err}){_redo(stage)}") from None


def read_jsonl(path: str | Path) -> list[dict]:
    """The rows of a JSON-lines log (none if it does not exist yet). A last line without its
    newline is a run killed mid-append: dropped, so the resumed run redoes that row."""
    path = Path(path)
    if not path.is_file():
        return []
    text = path.read_text()
    complete = text if text.endswith("\n") else text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line.strip()]


def append_jsonl(path: str | Path, row: dict) -> None:
    """Append one row to a JSON-lines log, flushed to disk before returning (a resumable
    experiment's checkpoint: a row written is never redone)."""
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_npz(path: str | Path, *, stage: str | None = None):
    """A ``.npz`` archive (a context manager; no pickles), or an error naming the file."""
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise StageFileError(f"{path} does not exist{_redo(stage)}")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise StageFileError(f"{path} is not a readable .npz archive ({err}){_redo(stage)}") from None


def read_netcdf(path: str | Path, *, stage: str | None = None, inference_data: bool = False):
    """An xarray Dataset (or, with ``inference_data``, an arviz InferenceData) from netCDF."""
    path = Path(path)
    if not path.is_file():
        raise StageFileError(f"{path} does not exist{_redo(stage)}")
    try:
        if inference_data:
            from faceaudit.files.quiet import arviz

            return arviz().from_netcdf(path)
        import xarray as xr

        with xr.open_dataset(path, engine="h5netcdf") as ds:
            return ds.load()
    except Exception as err:  # h5py raises OSError with a long chain; xarray ValueError
        raise StageFileError(f"{path} is not a readable netCDF file ({type(err).__name__}){_redo(stage)}") from None


def progress_bar(items, label: str, total: int | None = None):
    """A tqdm bar over ``items`` on an interactive terminal (or with FACEAUDIT_PROGRESS=1);
    with ``total``, ``items`` may be a stream (results as workers finish them)."""
    from tqdm import tqdm

    if total is None:
        items = list(items)
        total = len(items)
    quiet = not sys.stderr.isatty() and not os.environ.get("FACEAUDIT_PROGRESS")
    return tqdm(items, desc=label, total=total, leave=False, disable=quiet)


def check_output_file(path: str | Path | None, option: str) -> None:
    """Refuse, before any work, an output file that cannot be written: a folder, or a place
    where no file can be created (checked by creating and removing a temporary file there,
    which also holds for root on a read-only or virtual file system)."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise StageFileError(f"{option} {path} is a folder; name a file")
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".faceaudit-probe-"):
            pass
    except OSError as err:
        raise StageFileError(f"cannot write {option} {path}: {folder} does not take new files ({err.strerror})") from None
