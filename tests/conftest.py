"""Strict, CPU-first test configuration (see STYLE.md)."""

import os
import tempfile

# Pin JAX to the CPU before anything imports it; tests never use an accelerator. One
# persistent compilation cache for the whole run, shared with the CLI subprocesses the
# tests start (they inherit the environment), so a function compiled once is not compiled
# again in the next process; and one CPU device per core, as the CLI has.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("FACEAUDIT_JAX_CACHE", os.path.join(tempfile.gettempdir(), "faceaudit-test-jax-cache"))
# One BLAS thread per xdist worker (and per CLI subprocess it starts): the suite runs one
# worker per core, and OpenBLAS threads spin while they wait, so a thread per core in each
# worker oversubscribed the cores (the audit-space Monte Carlo test took 81 s beside a busy
# process with the default, 11 s with one thread).
_ONE_BLAS_THREAD = "PYTEST_XDIST_WORKER" in os.environ
if _ONE_BLAS_THREAD:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from faceaudit import runtime  # noqa: E402  (no jax imported yet)

runtime.configure()

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)

if _ONE_BLAS_THREAD:  # numpy may have loaded OpenBLAS before this file ran
    from threadpoolctl import threadpool_limits  # noqa: E402

    threadpool_limits(1, user_api="blas")

from hypothesis import HealthCheck, settings  # noqa: E402

# JIT compilation makes the first example of each shape slow; deadlines would flake.
settings.register_profile("faceaudit", deadline=None, max_examples=25, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("faceaudit")


@pytest.fixture
def rng():
    """A fresh, seeded numpy Generator per test."""
    return np.random.default_rng(20241128)


@pytest.fixture
def key():
    return jax.random.key(0)
