"""Dense linear algebra with a platform-specific fast path.

Why this module exists: on the CPU backend, XLA's float64 GEMM and its symmetric
eigensolver are slower and (for the eigensolver) less accurate than the LAPACK/BLAS that
numpy ships. Measured on the 2-core development machine at d = 2048: ``x.T @ x`` with
n = 10,000 took 2.0 s in XLA against 0.7 s in numpy (BLAS ``syrk``), and
``jnp.linalg.eigvalsh`` 1.5 s against 0.5 s for LAPACK's eigenvalues-only driver, which
is also the accurate way to get a sum of square roots of eigenvalues (the XLA path always
computes eigenvectors). So each kernel below has two implementations chosen when the
computation is lowered (``jax.lax.platform_dependent``):

* ``cpu``: a ``jax.pure_callback`` into numpy/scipy LAPACK, values only;
* everything else (GPU, TPU): the plain ``jax.numpy`` expression, which XLA runs well.

Public metrics given concrete arrays on CPU skip XLA altogether (``host_eager``): FD,
KID, PRDC and the cosine Vendi score run their numpy/BLAS kernels straight on the caller's
arrays, because tracing would first copy every input into an XLA buffer (60 ms for a
10,000 x 512 array here) only to hand it back to a host callback.

Both paths compute the same quantity; the tests run both and compare them. The value-only
kernels are not differentiable (the callbacks have no JVP); ``eigh`` carries its own JVP
(the analytical model differentiates through it). ``xla_only()`` forces the portable path.
"""

from __future__ import annotations

import contextlib
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

_HOST_LAPACK = True


@contextlib.contextmanager
def xla_only():
    """Run the core with the portable XLA kernels, even on CPU (for testing and timing)."""
    global _HOST_LAPACK
    previous = _HOST_LAPACK
    _HOST_LAPACK = False
    jax.clear_caches()
    try:
        yield
    finally:
        _HOST_LAPACK = previous
        jax.clear_caches()


# Below this size XLA's own GEMM is as fast as a host BLAS call plus its copy. The
# decompositions always go to the host on CPU: besides speed and accuracy, jaxlib 0.10's
# CPU eigensolver deadlocked (idle, never returning) when batched inside nested
# vmap/map, as the per-group bootstrap does; numpy's LAPACK wrappers do not.
GEMM_HOST_MIN_SIZE = 192


def _dispatch(host_fn, xla_fn, out_shape, *args, size: int | None = None):
    if not _HOST_LAPACK or (size is not None and size < GEMM_HOST_MIN_SIZE):
        return xla_fn(*args)

    def on_cpu(*a):
        # expand_dims: under vmap the callback receives the whole batch at once (leading
        # axes), and numpy's LAPACK wrappers loop over it without re-entering Python.
        return jax.pure_callback(host_fn, out_shape, *a, vmap_method="expand_dims")

    @jax.custom_jvp
    def kernel(*a):
        return jax.lax.platform_dependent(*a, cpu=on_cpu, default=xla_fn)

    @kernel.defjvp
    def _differentiated(primals, tangents):
        # A host callback has no derivative: differentiation goes through the portable XLA
        # kernel, whose decompositions carry JAX's own JVP rules (so jax.grad of the public
        # metrics works on every platform).
        return jax.jvp(xla_fn, primals, tangents)

    return kernel(*args)


# --- X^T X -----------------------------------------------------------------------------


def _host_gram(x):
    x = np.asarray(x)
    if x.ndim == 2:
        return x.T @ x  # numpy recognises the transposed self-product and calls BLAS syrk
    return np.matmul(np.swapaxes(x, -1, -2), x)


def gram(x: jax.Array) -> jax.Array:
    """``x.T @ x`` for an ``(n, d)`` array, in the dtype of ``x``."""
    d = x.shape[1]
    out = jax.ShapeDtypeStruct((d, d), x.dtype)
    return _dispatch(_host_gram, lambda a: a.T @ a, out, x, size=d)


# Elements per chunk of rows centred or scaled in the host Gram kernels (16 MB of float64).
# Small on purpose: one reused buffer stays in glibc's heap, while a full-size temporary
# (40 MB at 10,000 x 512) is a fresh mmap whose page faults cost 10-70 ms per call in
# the development VM, as much as the BLAS work itself.
SCATTER_CHUNK_ELEMENTS = 1 << 21


def host_eager(*arrays) -> bool:
    """True when these concrete arrays may go straight to the host BLAS, skipping XLA.

    On CPU, public entry points given numpy arrays (or concrete CPU JAX arrays) call the
    host kernels directly: tracing would first copy every input into an XLA buffer and
    then hand it back to the host callback.
    """
    return (_HOST_LAPACK and jax.default_backend() == "cpu"
            and not any(isinstance(a, jax.core.Tracer) for a in arrays))


def host_row_gram(x, *, centre=None, row_scale=None):
    """``sum_i s_i^2 (x_i - c)(x_i - c)^T`` in numpy: rows centred and scaled per chunk
    into one reused buffer, accumulated with BLAS ``syrk`` (half a GEMM's flops)."""
    n, d = x.shape
    syrk = scipy.linalg.blas.get_blas_funcs("syrk", (x,))
    out = np.zeros((d, d), dtype=x.dtype, order="F")
    chunk = max(1, min(n, SCATTER_CHUNK_ELEMENTS // d))
    buffer = np.empty((chunk, d), dtype=x.dtype)
    for start in range(0, n, chunk):
        rows = buffer[: min(chunk, n - start)]
        stop = start + rows.shape[0]
        if centre is not None:
            np.subtract(x[start:stop], centre, out=rows)
        else:
            rows[...] = x[start:stop]
        if row_scale is not None:
            rows *= row_scale[start:stop, None]
        # rows.T is a Fortran-ordered (d, m) view: syrk forms rows.T @ rows in the upper
        # triangle without a copy and accumulates in place (beta = 1).
        out = syrk(1.0, rows.T, beta=1.0, c=out, trans=0, lower=0, overwrite_c=1)
    return _symmetrised(out)


def _symmetrised(upper):
    upper = np.triu(upper)
    return upper + np.triu(upper, 1).T


def host_row_gram_stats(x):
    """Column means and centred scatter of a numpy ``(n, d)`` array (two passes)."""
    mean = x.mean(axis=0)
    return mean, host_row_gram(x, centre=mean)


@functools.lru_cache(maxsize=1)
def _blas_controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def host_cores() -> int:
    """CPU cores this process may run on (the affinity mask, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def single_threaded():
    """A context in which the host BLAS/LAPACK run on one thread: for results that must not
    change in the last bit with the thread count (a threaded ``syevr`` splits its
    reductions differently; the audit space is shared by every number of an audit)."""
    return _blas_controller().limit(limits=1, user_api="blas")


def host_map(fn, items) -> list:
    """``[fn(a) for a in items]`` on one thread per core, each with a single-threaded BLAS
    (numpy and LAPACK release the GIL). Pays off for batches of mid-sized products (KID's
    1,000-row subsets: 15-30% here) and for GEMMs interleaved with numpy bookkeeping that
    would otherwise leave a core idle (PRDC); the per-group bootstrap's 500 x 500 SVDs
    showed no gain and stay serial."""
    items = list(items)
    workers = min(host_cores(), len(items))
    if workers < 2:
        return [fn(a) for a in items]
    from concurrent.futures import ThreadPoolExecutor

    with single_threaded(), ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))


def _host_mean_scatter(x):
    x = np.asarray(x)
    if x.ndim == 2:
        return host_row_gram_stats(x)
    flat = [host_row_gram_stats(a) for a in x.reshape(-1, *x.shape[-2:])]
    means = np.stack([m for m, _ in flat]).reshape(x.shape[:-2] + x.shape[-1:])
    scatters = np.stack([s for _, s in flat]).reshape(x.shape[:-2] + 2 * x.shape[-1:])
    return means, scatters


def _xla_mean_scatter(x):
    mean = x.mean(axis=0)
    centred = x - mean
    return mean, centred.T @ centred


def mean_scatter(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Column means and the centred scatter ``(x - mean)^T (x - mean)`` of an ``(n, d)`` array.

    Two passes (mean first), so no large sums of squares cancel. On CPU one host call:
    chunks of rows are centred and accumulated with BLAS ``syrk`` (half a GEMM's flops),
    so neither a centred copy of ``x`` nor a transfer of it back to XLA is made.
    """
    d = x.shape[1]
    out = (jax.ShapeDtypeStruct((d,), x.dtype), jax.ShapeDtypeStruct((d, d), x.dtype))
    return _dispatch(_host_mean_scatter, _xla_mean_scatter, out, x, size=d)


# --- eigenvalues and singular values ---------------------------------------------------


def _eigvalsh_values_only(a):
    # LAPACK syevr, eigenvalues only (scipy's OpenBLAS; numpy's eigvalsh took 5 ms at
    # d = 64 here, against 0.3 ms for this call).
    return scipy.linalg.eigvalsh(a, driver="evr", check_finite=False)


def _host_eigvalsh(a):
    a = np.asarray(a)
    if a.ndim == 2:
        return _eigvalsh_values_only(a)
    flat = a.reshape(-1, *a.shape[-2:])
    return np.stack([_eigvalsh_values_only(m) for m in flat]).reshape(a.shape[:-1])


def _host_eigh(a):
    # numpy's gufunc loops over a batch in C (the analytical model's planner calls this on
    # posterior draws x groups at every step: half the time of a Python loop over scipy).
    a = np.asarray(a)
    try:
        return np.linalg.eigh(a)
    except np.linalg.LinAlgError:
        # A matrix with NaN (a sampler's proposal far out) has no eigensystem: NaN for it,
        # so the proposal is rejected, instead of an exception that ends the whole fit.
        flat = a.reshape(-1, *a.shape[-2:])
        values, vectors = np.full(flat.shape[:-1], np.nan), np.full(flat.shape, np.nan)
        for i, m in enumerate(flat):
            if np.isfinite(m).all():
                values[i], vectors[i] = np.linalg.eigh(m)
        return values.reshape(a.shape[:-1]), vectors.reshape(a.shape)


@jax.custom_jvp
def eigh(a: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Eigenvalues (ascending) and eigenvectors of a symmetric ``(d, d)`` matrix, differentiable.

    On CPU a LAPACK callback: XLA's CPU eigensolver (jaxlib 0.10) hung, idle, on some
    inputs inside ``lax.map``-batched Monte Carlo, reproducibly for a given key.
    """
    out = (jax.ShapeDtypeStruct(a.shape[:-1], a.dtype), jax.ShapeDtypeStruct(a.shape, a.dtype))
    return _dispatch(_host_eigh, lambda m: tuple(jnp.linalg.eigh(m)), out, a)


@eigh.defjvp
def _eigh_jvp(primals, tangents):
    # First-order perturbation theory (as jax.numpy's own eigh rule): with Vt dA V = H,
    # dw = diag(H), dV = V (F * H), F_ij = 1 / (w_j - w_i) off the diagonal.
    (a,), (da,) = primals, tangents
    w, v = eigh(a)
    h = jnp.swapaxes(v, -1, -2) @ da @ v
    gap = w[..., None, :] - w[..., :, None]
    # Degenerate eigenvalues (an isotropic covariance) make 1/gap infinite. Within a
    # degenerate eigenspace the eigenvectors are arbitrary, and the callers' spectral
    # functions do not depend on that choice, so those entries are set to zero (a zero
    # tangent times an infinite factor would otherwise turn gradients into NaN).
    scale = jnp.max(jnp.abs(w), axis=-1, keepdims=True)[..., None]
    degenerate = jnp.abs(gap) <= 1e-10 * jnp.maximum(scale, jnp.finfo(w.dtype).tiny)
    f = jnp.where(degenerate, 0.0, 1.0 / jnp.where(degenerate, 1.0, gap))
    return (w, v), (jnp.diagonal(h, axis1=-2, axis2=-1), v @ (f * h))


def eigvalsh(a: jax.Array) -> jax.Array:
    """Eigenvalues (ascending) of a symmetric matrix, values only where the platform allows."""
    out = jax.ShapeDtypeStruct(a.shape[:1], a.dtype)
    return _dispatch(_host_eigvalsh, jnp.linalg.eigvalsh, out, a)


def _svdvals_nonzero_block(a):
    """Singular values of ``a``, from its block of rows and columns that are not all zero.

    Bootstrap replicates and padded groups enter as zero weights, i.e. exact zero rows and
    columns; a multinomial resample leaves about 37% of the rows out, so dropping them cuts
    the cubic SVD cost about fourfold. The dropped singular values are exact zeros.
    """
    rows = np.flatnonzero(np.any(a != 0, axis=1))
    cols = np.flatnonzero(np.any(a != 0, axis=0))
    out = np.zeros(min(a.shape), dtype=a.dtype)
    if rows.size and cols.size:
        block = a[np.ix_(rows, cols)] if rows.size < a.shape[0] or cols.size < a.shape[1] else a
        values = scipy.linalg.svdvals(block, check_finite=False)
        out[: values.size] = values
    return out


def _host_svdvals(m):
    m = np.asarray(m)
    if m.ndim == 2:
        return _svdvals_nonzero_block(m)
    flat = m.reshape(-1, *m.shape[-2:])
    return np.stack([_svdvals_nonzero_block(a) for a in flat]).reshape(*m.shape[:-2], -1)


def singular_values(m: jax.Array) -> jax.Array:
    """Singular values (descending) of a rectangular matrix, values only."""
    out = jax.ShapeDtypeStruct((min(m.shape),), m.dtype)
    return _dispatch(_host_svdvals, lambda a: jnp.linalg.svd(a, compute_uv=False), out, m)


# --- the spectrum of S1 S2 for two covariance matrices ---------------------------------


def _host_product_spectrum(s1, s2):
    s1, s2 = np.broadcast_arrays(np.asarray(s1), np.asarray(s2))
    if s1.ndim > 2:
        # A batch (the bootstrap's replicates): one thread per core, each with a
        # single-threaded BLAS. At d = 128 a two-thread OpenBLAS spent 15 ms per matrix
        # waking its threads for sub-millisecond calls, against 0.9 ms single-threaded.
        pairs = zip(s1.reshape(-1, *s1.shape[-2:]), s2.reshape(-1, *s2.shape[-2:]))
        flat = host_map(lambda ab: _host_product_spectrum(*ab), pairs)
        return np.stack(flat).reshape(s1.shape[:-1])
    try:
        factor = scipy.linalg.cholesky(s1, lower=True, check_finite=False)
        # L^T S2 L by LAPACK's sygst (itype 2, the reduction of the problem S2 S1 x = l x):
        # it exploits the symmetry of S2, about d^3 flops against 2 d^3 for two triangular
        # multiplies, and leaves the result in the lower triangle, which is all the
        # eigensolver reads.
        sygst = scipy.linalg.lapack.get_lapack_funcs("sygst", (factor,))
        core, info = sygst(np.asfortranarray(s2), factor, itype=2, lower=1)
        if info != 0:
            raise np.linalg.LinAlgError(f"sygst failed (info={info})")
    except np.linalg.LinAlgError:
        return _singular_product_spectrum(s1, s2)
    return np.sqrt(np.clip(_eigvalsh_values_only(core), 0.0, None))


def _singular_product_spectrum(s1, s2):
    """``product_spectrum`` when ``s1`` is singular to working precision: fewer distinct
    rows than dimensions (every bootstrap replicate of a group with n near d repeats rows),
    or constant features. A pivoted Cholesky (LAPACK pstrf) finds the rank ``r`` and a
    ``d x r`` factor at a tenth of a full eigendecomposition's cost (1.4 against 18 ms at
    d = 128), and it drops the directions of zero variance, where the symmetric square-root
    factor would add sqrt(round-off) from each. Padded with zeros to ``d`` values."""
    d = s1.shape[0]
    pstrf = scipy.linalg.lapack.get_lapack_funcs("pstrf", (s1,))
    packed, pivots, rank, info = pstrf(s1, lower=1)
    if info < 0:
        raise np.linalg.LinAlgError(f"pstrf failed (info={info})")
    factor = np.zeros((d, rank), dtype=s1.dtype)
    factor[pivots - 1] = np.tril(packed)[:, :rank]  # P L: row i of L belongs to variable pivots[i]
    core = factor.T @ s2 @ factor
    core = 0.5 * (core + core.T)
    values = np.zeros(d, dtype=s1.dtype)
    values[:rank] = np.sqrt(np.clip(_eigvalsh_values_only(core), 0.0, None)) if rank else 0.0
    return values


def _xla_product_spectrum(s1, s2):
    chol = jnp.linalg.cholesky(s1)

    def eig_factor(s):
        evals, evecs = jnp.linalg.eigh(s)
        return evecs * jnp.sqrt(jnp.clip(evals, 0.0))

    factor = jax.lax.cond(jnp.all(jnp.isfinite(chol)), lambda s: chol, eig_factor, s1)
    core = factor.T @ s2 @ factor
    core = 0.5 * (core + core.T)
    return jnp.sqrt(jnp.clip(jnp.linalg.eigvalsh(core), 0.0))


def product_spectrum(s1: jax.Array, s2: jax.Array) -> jax.Array:
    """Square roots of the eigenvalues of ``s1 @ s2`` for symmetric PSD ``s1``, ``s2``.

    Their sum is ``tr((s1^{1/2} s2 s1^{1/2})^{1/2})``, the cross term of the Frechet
    distance. Computed as the eigenvalues of the symmetric ``L^T s2 L`` with ``s1 = L L^T``
    (Cholesky; a symmetric square-root factor when ``s1`` is singular), never through
    ``sqrtm`` or a general eigensolver, so it is real and non-negative by construction.
    """
    out = jax.ShapeDtypeStruct(s1.shape[:1], s1.dtype)
    return _dispatch(_host_product_spectrum, _xla_product_spectrum, out, s1, s2)
