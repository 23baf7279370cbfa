"""Process-wide JAX settings for the command line and the test suite, applied before JAX
starts: one CPU device per core (so posterior chains run side by side: numpyro's
``chain_method="parallel"``), and the persistent compilation cache.

The library itself changes no global state on import (``faceaudit.core`` only turns on
float64); a program that embeds faceaudit keeps its own JAX configuration.
"""

from __future__ import annotations

import os
from pathlib import Path

DEVICE_FLAG = "--xla_force_host_platform_device_count"


def cache_dir() -> Path | None:
    """``FACEAUDIT_JAX_CACHE`` (empty: no cache), else ``~/.cache/faceaudit/jax``."""
    value = os.environ.get("FACEAUDIT_JAX_CACHE")
    if value == "":
        return None
    return Path(value) if value else Path.home() / ".cache" / "faceaudit" / "jax"


def configure() -> None:
    """Call before the first ``import jax`` (later calls only set what JAX still accepts)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if DEVICE_FLAG not in flags:
        cores = min(os.cpu_count() or 1, 8)
        os.environ["XLA_FLAGS"] = f"{flags} {DEVICE_FLAG}={cores}".strip()
    folder = cache_dir()
    if folder is None:
        return
    import jax

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # an unwritable home: run without the cache
    jax.config.update("jax_compilation_cache_dir", str(folder))
    # Every compile is kept: most of faceaudit's take 0.05-3 s, and a sampler run compiles
    # ~100 small ones (0.15 s each) afresh in every process, because numpyro builds new
    # closures each time; the default threshold (1 s) kept none of those. (JAX never keeps
    # a computation with a host callback: the analytical model's sampler, whose eigh is a
    # LAPACK callback on CPU, still compiles once in every process; within a process
    # tables/posterior.ReusedParallelChains keeps it.)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def chain_method(num_chains: int) -> str:
    """Chains side by side on the host's devices when there are enough of them."""
    import jax

    return "parallel" if num_chains > 1 and jax.local_device_count() >= num_chains else "vectorized"
