"""Batches of work on a pool of Ray actors, each holding one model (``--ray ADDRESS``).

Ray is imported here only, and only when a run asks for it (the ``faceaudit[ray]`` extra).
Each actor builds its model once (a diffusion pipeline, an encoder) and then takes batches.
A batch's work writes its own files atomically and content-addressed (images named by
their hash, a Parquet or netCDF part named by the batch's jobs), exactly as the
single-process path does, so a batch retried after its worker died writes the same files
again: nothing is lost or duplicated. Ray restarts a dead actor and retries the batch it
held (``max_restarts``, ``max_task_retries``); the driver only hands out batches and waits,
and a rerun after the driver died skips every batch that its parts record.

This is no scheduler of our own: the pool is ``ray.util.ActorPool``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence

from faceaudit.files.spec import RaySpec

# A batch that kills its worker this many times is a bug in the batch (say, out of GPU
# memory at this batch size), not bad luck: the run stops and names it.
RETRIES = 3


class ShardWorker:
    """One actor: ``factory()`` builds the model once; ``run(batch)`` does one batch."""

    def __init__(self, factory: Callable[[], Callable], threads: int):
        if threads:  # CPU kernels round differently per thread count: fix it for identical bytes
            import torch

            torch.set_num_threads(threads)
        self.work = factory()

    def run(self, batch):
        return self.work(batch)


def connect(spec: RaySpec) -> bool:
    """Join (or start) the Ray instance ``spec.address`` names; True when this call started it."""
    try:
        import ray
    except ImportError:
        raise RuntimeError('--ray needs Ray: pip install "faceaudit[ray]"') from None
    if ray.is_initialized():
        return False
    address = None if spec.address == "local" else spec.address
    try:
        with warnings.catch_warnings():
            # Ray starts its services with subprocess.Popen(preexec_fn=...), which runs
            # Python's fork hooks; JAX's hook then warns about forking a multithreaded
            # process, but each child execs its service at once and never runs JAX.
            warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    except ConnectionError as err:
        raise ConnectionError(f"cannot reach the Ray cluster at {spec.address!r}: {err}") from None
    return True


def run_batches(spec: RaySpec, factory: Callable[[], Callable], batches: Sequence, *, use_gpu: bool,
                threads: int = 0, progress: Callable[[Iterator], Iterator] = iter) -> None:
    """Run every batch on ``spec.workers`` actors; ``progress`` wraps the stream of results
    as they finish (a progress bar).

    ``factory`` and the batches are pickled to the workers, so they must be plain data and
    module-level callables (faceaudit must be installed on every node)."""
    import ray
    from ray.util import ActorPool

    if not batches:
        return
    started = connect(spec)
    actors = []
    try:
        actor = ray.remote(ShardWorker).options(
            num_cpus=spec.cpus_per_worker, num_gpus=spec.gpus_per_worker if use_gpu else 0,
            max_restarts=RETRIES, max_task_retries=RETRIES)
        threads = threads or max(1, int(spec.cpus_per_worker))
        actors = [actor.remote(factory, threads) for _ in range(min(spec.workers, len(batches)))]
        pool = ActorPool(actors)
        try:
            for _ in progress(pool.map_unordered(lambda a, batch: a.run.remote(batch), list(batches))):
                pass
        except ray.exceptions.RayTaskError as err:  # an error of ours inside a worker: show it, not Ray's wrapper
            raise (getattr(err, "cause", None) or err) from None
        except ray.exceptions.RayActorError as err:
            raise RuntimeError(f"a Ray worker died {RETRIES + 1} times on one batch (out of memory at this "
                               f"batch size?): {err}") from None
    finally:
        for a in actors:
            ray.kill(a)
        if started:
            ray.shutdown()
