"""Data-parallel training with PyTorch DDP: one launcher, one set of calls for the trainers.

A training phase runs in ``world_size`` processes. The environment says who is who, exactly as
``torchrun`` and a Kubeflow ``PyTorchJob`` set it (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``), so the same trainer code runs:

* in one process (no variables set: every helper here is a no-op),
* in N local processes started by :func:`launch` (a pipeline component, or a test on CPU),
* across pods of a PyTorchJob (the training operator sets the variables; ``torchrun`` per pod).

Backend: ``nccl`` when the process drives a CUDA device, ``gloo`` otherwise (CPU);
``TEXINSPECT_DIST_BACKEND`` overrides it. Collectives time out after
``TEXINSPECT_DIST_TIMEOUT_MINUTES`` (default 30): long enough for rank 0 to build FMR-Net's memory
bank while the other ranks wait at a barrier.

How the trainers use it (``training.loop.run_phase`` does most of it once for every family):
:func:`session` around a family's ``train``; :class:`DDPForward` around the part of a step that
computes a loss from trained modules (its backward then all-reduces their gradients); the loop
shards the data (:func:`distributed_batches`), averages logged losses and agrees on stopping
(:func:`reduce_step`, :func:`agree`), starts every phase from rank 0's state
(:func:`broadcast_modules`), checks at the end that the ranks hold the same weights
(:func:`gather_checksums`), and only rank 0 writes (:func:`is_main_process`).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import os
import random
import socket
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim import Optimizer
from torch.utils.data import Dataset, DistributedSampler

from texinspect.devices import resolve_device
from texinspect.errors import ConfigError, ModelError
from texinspect.training.batches import resumable_batches

log = logging.getLogger(__name__)

ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
BACKEND_ENV = "TEXINSPECT_DIST_BACKEND"
TIMEOUT_ENV = "TEXINSPECT_DIST_TIMEOUT_MINUTES"
DEFAULT_TIMEOUT_MINUTES = 30.0
CHECKSUM_RTOL = 1e-6  # ranks whose weight checksums differ by more than this have diverged


@dataclass(frozen=True)
class DistContext:
    """Who this process is in the job, and the device it drives."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str = ""

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


_CONTEXT: DistContext | None = None  # set only while a process group (world size > 1) is joined


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ConfigError(f"environment variable {name}={value!r} must be an integer") from exc


def _timeout() -> timedelta:
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        minutes = float(raw) if raw else DEFAULT_TIMEOUT_MINUTES
    except ValueError as exc:
        raise ConfigError(f"environment variable {TIMEOUT_ENV}={raw!r} must be a number of minutes") from exc
    if not minutes > 0:
        raise ConfigError(f"environment variable {TIMEOUT_ENV}={raw!r} must be positive")
    return timedelta(minutes=minutes)


def init_distributed(device: str | torch.device = "auto") -> DistContext:
    """Join the process group described by the environment (idempotent).

    ``device="auto"`` or ``"cuda"``: each process takes ``cuda:LOCAL_RANK`` when CUDA is present,
    else the CPU. Without ``WORLD_SIZE`` (or with 1) nothing is initialised and a single-process
    context on ``device`` is returned, so trainers call this unconditionally.
    """
    global _CONTEXT
    if _CONTEXT is not None:
        return _CONTEXT
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", rank)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"distributed environment is inconsistent: RANK={rank}, WORLD_SIZE={world_size}")
    dev = _rank_device(device, local_rank)
    if world_size == 1:
        return DistContext(0, 1, 0, dev, "")
    for key in ("MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(key):
            raise ConfigError(f"WORLD_SIZE={world_size} but {key} is not set (torchrun/PyTorchJob set it)")
    backend = os.environ.get(BACKEND_ENV) or ("nccl" if dev.type == "cuda" else "gloo")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size, timeout=_timeout())
        atexit.register(cleanup)  # torchrun workers exit normally; spawned ones call cleanup themselves
    _CONTEXT = DistContext(rank, world_size, local_rank, dev, backend)
    log.info("DDP rank %d/%d on %s (%s)", rank, world_size, dev, backend)
    return _CONTEXT


def _rank_device(device: str | torch.device, local_rank: int) -> torch.device:
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    dev = resolve_device(str(device))
    if dev.type == "cuda" and dev.index is None:
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return dev


@contextlib.contextmanager
def session(device: str | torch.device = "auto") -> Iterator[DistContext]:
    """:func:`init_distributed` for a family's ``train``; leaves the group at the end if it joined it.

    Nested use (a caller that already joined) is fine: only the outermost session cleans up.
    """
    owner = _CONTEXT is None and not (dist.is_available() and dist.is_initialized())
    ctx = init_distributed(device)
    try:
        yield ctx
    finally:
        if owner and ctx.enabled:
            cleanup()


def current() -> DistContext:
    """The joined context (single-process, CPU, if no group was joined)."""
    return _CONTEXT if _CONTEXT is not None else DistContext()


def is_main_process() -> bool:
    """Rank 0 writes checkpoints, artifacts, summaries and MLflow logs; the others do not.

    After the group is left (end of ``train``) the answer still comes from ``RANK``, so a CLI
    that tracks the run after training does so on rank 0 only.
    """
    if _CONTEXT is not None:
        return _CONTEXT.is_main
    return _env_int("RANK", 0) == 0


# --------------------------------------------------------------------------- models


def wrap_ddp(
    module: nn.Module,
    ctx: DistContext | None = None,
    find_unused_parameters: bool = False,
    static_graph: bool = False,
) -> nn.Module:
    """``DistributedDataParallel(module)`` when distributed, else ``module`` itself.

    Call after moving the module to ``ctx.device``. Frozen modules (no parameter requiring
    gradients, e.g. the phase-2 encoder) are returned unwrapped. On CUDA, BatchNorm layers become
    SyncBatchNorm (in place, sharing the parameters, so existing optimizers keep working) and
    normalise over the global batch; gloo has no SyncBatchNorm, so on CPU each rank normalises
    its own shard and DDP broadcasts rank 0's running statistics before every forward.
    """
    ctx = ctx or current()
    if not ctx.enabled or not any(p.requires_grad for p in module.parameters()):
        return module
    options: dict[str, Any] = {"find_unused_parameters": find_unused_parameters, "static_graph": static_graph}
    if ctx.device.type == "cuda":
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
        options["device_ids"] = [ctx.device.index]
    return DistributedDataParallel(module, **options)


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside a DDP wrapper: what checkpoints and model artifacts store."""
    return module.module if isinstance(module, DistributedDataParallel) else module


class _Window(nn.Module):
    """Holds the trained modules of one loss; ``forward(fn, ...)`` runs ``fn`` as DDP's forward."""

    def __init__(self, parts: Sequence[nn.Module]) -> None:
        super().__init__()
        self.parts = nn.ModuleList(parts)

    def forward(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)


class DDPForward:
    """Run a loss computation of ``modules`` so that its backward all-reduces their gradients.

    The trainers call pieces of their networks (``net.encoder``, ``net.decode``, a discriminator
    twice) rather than one ``forward``; DDP only synchronises gradients of what runs inside its
    own forward. ``sync(fn, *args)`` calls ``fn(*args)`` inside the forward of one DDP wrapper
    over ``modules`` and returns what ``fn`` returns (the loss tensor must be part of it, and
    ``backward`` must be called on it before the next ``sync``). Single-process it is a plain
    call. Which parts a loss uses depends on the config (ablations, loss weights of 0) but not
    on the step, so the wrapper is a static graph: DDP records the used parameters in the first
    step and does not search the autograd graph again. Give whole modules (an encoder, a
    decoder), not a bare BatchNorm layer: SyncBatchNorm conversion replaces layers inside them.
    """

    def __init__(self, modules: Sequence[nn.Module | None], ctx: DistContext | None = None) -> None:
        parts = [m for m in modules if m is not None]
        window = _Window(parts)
        self.module = wrap_ddp(window, ctx, static_graph=True)
        for before, after in zip(parts, window.parts, strict=True):
            if before is not after:
                raise ModelError(
                    f"DDPForward was given a bare {type(before).__name__}; pass the module that contains it"
                )

    @property
    def distributed(self) -> bool:
        return isinstance(self.module, DistributedDataParallel)

    def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self.module(fn, *args, **kwargs)

    def optimize(
        self, fn: Callable[..., tuple[torch.Tensor, dict[str, float]]], optimizer: Optimizer, *args: Any
    ) -> dict[str, float]:
        """One optimiser step on ``fn(*args) -> (loss, info)``; returns ``info`` plus ``loss``.

        The step every trainer takes: loss inside the (DDP) forward, then zero_grad, backward, step.
        """
        loss, info = self(fn, *args)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        info["loss"] = float(loss.detach())
        return info


def _broadcast_tensors(tensors: Iterable[torch.Tensor]) -> None:
    """Overwrite ``tensors`` with rank 0's values: one broadcast per dtype and device."""
    groups: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = defaultdict(list)
    seen: set[int] = set()
    for t in tensors:
        if id(t) not in seen:
            seen.add(id(t))
            groups[(t.dtype, t.device)].append(t)
    for (dtype, _), group in groups.items():
        wire = torch.uint8 if dtype == torch.bool else dtype  # gloo and nccl have no bool
        flat = torch.cat([t.detach().reshape(-1).to(wire) for t in group])
        dist.broadcast(flat, src=0)
        offset = 0
        with torch.no_grad():
            for t in group:
                n = t.numel()
                t.copy_(flat[offset : offset + n].view(t.shape).to(dtype))
                offset += n


def broadcast_modules(modules: Iterable[nn.Module]) -> None:
    """Give every rank rank 0's parameters and buffers (reference images, BatchNorm statistics)."""
    if not current().enabled:
        return
    tensors: list[torch.Tensor] = []
    for module in modules:
        tensors += list(module.parameters()) + list(module.buffers())
    _broadcast_tensors(tensors)


def weight_checksum(modules: Iterable[nn.Module]) -> float:
    """A position-weighted float64 sum of all parameters: equal on ranks that hold equal weights."""
    total = 0.0
    index = 0
    for module in modules:
        for p in module.parameters():
            index += 1
            total += index * float(p.detach().double().sum())
    return total


def gather_checksums(modules: Iterable[nn.Module]) -> list[float]:
    """Every rank's :func:`weight_checksum`, in rank order (a list of one when not distributed)."""
    mods = list(modules)
    value = weight_checksum(mods)
    ctx = current()
    if not ctx.enabled:
        return [value]
    local = torch.tensor([value], dtype=torch.float64, device=ctx.device)
    out = [torch.zeros_like(local) for _ in range(ctx.world_size)]
    dist.all_gather(out, local)
    return [float(t.item()) for t in out]


def check_in_sync(checksums: Sequence[float], what: str) -> None:
    """Raise (on every rank alike) when the ranks' weights differ: their DDP sync is broken."""
    if len(checksums) < 2:
        return
    ref = checksums[0]
    spread = max(abs(c - ref) for c in checksums)
    if not math.isfinite(spread) or spread > CHECKSUM_RTOL * max(1.0, abs(ref)):
        raise ModelError(f"{what}: DDP ranks hold different weights (checksums by rank {list(checksums)})")


# --------------------------------------------------------------------------- the loop's collectives


def agree(flag: bool) -> bool:
    """Rank 0's ``flag`` on every rank (e.g. "the wall-clock budget is spent")."""
    ctx = current()
    if not ctx.enabled:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=ctx.device)
    dist.broadcast(t, src=0)
    return bool(t.item() > 0)


def reduce_step(values: dict[str, float], stop: bool) -> tuple[dict[str, float], bool]:
    """One collective per step: the ranks' mean of each loss, and rank 0's stop decision.

    Every rank calls it with the same keys. A non-finite loss on any rank makes the mean
    non-finite on all of them, so all ranks stop together instead of leaving one waiting.
    """
    ctx = current()
    if not ctx.enabled:
        return {k: float(v) for k, v in values.items()}, bool(stop)
    keys = sorted(values)
    flag = 1.0 if (stop and ctx.is_main) else 0.0
    t = torch.tensor([float(values[k]) for k in keys] + [flag], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    means = (t[:-1] / ctx.world_size).tolist()
    return dict(zip(keys, means, strict=True)), bool(t[-1].item() > 0)


def all_reduce_mean(values: dict[str, float]) -> dict[str, float]:
    """Average scalars over ranks (every rank calls it with the same keys)."""
    return reduce_step(values, False)[0] if values else {}


def reseed_for_rank() -> None:
    """Different random streams per rank (patch positions, dropout) drawn from a shared state.

    Called by the loop at the start of a phase, after any resume restored rank 0's saved RNG
    state, so a rerun draws the same streams. No-op in one process.
    """
    ctx = current()
    if not ctx.enabled:
        return
    base = int(torch.randint(0, 2**31 - 1, (1,)).item())
    seed = base + 1_000_003 * ctx.rank
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def barrier() -> None:
    """Wait for every rank (e.g. before the others read what rank 0 wrote)."""
    ctx = current()
    if not ctx.enabled:
        return
    if ctx.device.type == "cuda" and ctx.backend == "nccl":
        dist.barrier(device_ids=[ctx.device.index])
    else:
        dist.barrier()


def cleanup() -> None:
    """Leave the process group (safe to call when none was joined)."""
    global _CONTEXT
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _CONTEXT = None


# --------------------------------------------------------------------------- data


def _worker_seed(worker_id: int) -> None:
    seed = torch.initial_seed() % (2**32)
    np.random.seed(seed)
    random.seed(seed)


def distributed_batches(
    dataset: Dataset,
    batch_size: int,
    seed: int,
    ctx: DistContext | None = None,
    num_workers: int = 0,
) -> Callable[[int], Iterator[Any]]:
    """Same contract as ``training.loop.infinite_batches``, but each rank sees its own shard.

    ``batch_size`` is per process (the global batch is ``batch_size * world_size``). Epoch ``e``
    shuffles with ``seed`` and ``e`` on every rank, so the shards are disjoint and a resumed run
    sees the same order from the batch it stopped before (``training.batches``); a dataset with
    ``set_epoch`` (synthetic defects) gets new draws per epoch.
    """
    ctx = ctx or current()
    n = len(dataset)  # type: ignore[arg-type]
    per_rank = max(1, n // ctx.world_size)
    batch_size = max(1, min(batch_size, per_rank))
    sampler = DistributedSampler(
        dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed, drop_last=True
    )

    def order(epoch: int) -> list[int]:
        sampler.set_epoch(epoch)
        return list(iter(sampler))

    return resumable_batches(
        dataset, batch_size, order, seed + 1_000_003 * ctx.rank, num_workers, per_rank >= batch_size, _worker_seed
    )


# --------------------------------------------------------------------------- local launcher


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _entry(
    local_rank: int,
    fn: Callable[..., Any],
    args: Sequence[Any],
    world_size: int,
    port: int,
    backend: str,
) -> None:
    os.environ.update(
        {
            "RANK": str(local_rank),
            "LOCAL_RANK": str(local_rank),
            "WORLD_SIZE": str(world_size),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )
    if backend:
        os.environ[BACKEND_ENV] = backend
    if not os.environ.get("OMP_NUM_THREADS") and not torch.cuda.is_available():
        # N CPU processes share the cores (torchrun does the same with OMP_NUM_THREADS)
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
    try:
        fn(*args)
    finally:
        cleanup()


def launch(fn: Callable[..., Any], world_size: int, args: Sequence[Any] = (), backend: str = "") -> None:
    """Run ``fn(*args)`` in ``world_size`` local processes that form one DDP job (one node).

    ``world_size <= 1`` calls ``fn`` in this process. ``fn`` must be importable (module level)
    because the processes are spawned; it calls :func:`init_distributed` (or a trainer's
    :func:`session`) itself. A failing rank raises here with its traceback and stops the others.
    """
    if world_size < 1:
        raise ConfigError(f"world size must be at least 1, got {world_size}")
    if world_size == 1:
        fn(*args)
        return
    mp.spawn(_entry, args=(fn, tuple(args), world_size, free_port(), backend), nprocs=world_size, join=True)

