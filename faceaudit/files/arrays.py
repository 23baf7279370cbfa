"""Embedding arrays and group labels from the user's files (``faceaudit metrics``).

Only loading and shape checks live here (no jax in this layer); the values themselves
(NaN rows, ...) are checked by the core, under the file's name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def load_embeddings(path: str | Path) -> np.ndarray:
    """An ``(n, d)`` floating array from ``.npy``; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"embeddings file not found: {path}")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"{path} is not a readable .npy array: {err or type(err).__name__}") from None
    if not isinstance(array, np.ndarray) or array.ndim != 2:
        raise ValueError(f"{path} must hold an (n, d) array (one embedding per row), got shape {np.shape(array)}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{path} is empty (shape {array.shape})")
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{path} has dtype {array.dtype}; embeddings must be floating point (cast with .astype(np.float32))")
    return array


def load_labels(path: str | Path, n: int, *, of: str) -> np.ndarray:
    """Group labels, one per row of the embeddings ``of``: ``.npy`` or text (one per line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"group labels file not found: {path}")
    if path.suffix == ".npy":
        try:
            labels = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise ValueError(f"{path} is not a readable .npy array: {err or type(err).__name__}") from None
    else:
        try:
            lines = [line.strip() for line in path.read_text().splitlines()]
        except UnicodeDecodeError:
            raise ValueError(f"{path} is not a text file of labels (one per line) or a .npy array") from None
        while lines and not lines[-1]:  # a trailing newline is not a label
            lines.pop()
        if "" in lines:
            raise ValueError(f"{path}: empty label on line {lines.index('') + 1}")
        labels = np.array(lines, dtype=object)
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(f"{path} has {labels.shape[0] if labels.ndim else 0} labels but {of} has {n} rows")
    return labels


def refuse_repeated_rows(arrays: dict[str, np.ndarray]) -> None:
    """The duplicate policy of ``faceaudit metrics`` (as of ``audit --images``): one
    embedding twice, in one file or in both, is refused with its rows named. A repeated
    row weighs one face twice; one in both sets compares a face with itself.

    Raises:
        ValueError: ``"real.npy row 3 and fake.npy row 17 are the same embedding"``.
    """
    seen: dict[bytes, tuple[str, int]] = {}
    clashes = []
    for name, array in arrays.items():
        rows = np.ascontiguousarray(array)
        for i in range(len(rows)):
            first = seen.setdefault(rows[i].tobytes(), (name, i))
            if first != (name, i):
                clashes.append(f"{first[0]} row {first[1]} and {name} row {i}")
    if clashes:
        more = f" (and {len(clashes) - 3} more)" if len(clashes) > 3 else ""
        raise ValueError("; ".join(clashes[:3]) + f" are the same embedding{more}: the same image twice? "
                         "List each image once, in one set")
