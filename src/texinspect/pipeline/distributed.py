"""Data-parallel training with PyTorch DDP: one launcher, one set of calls for the trainers.

A training phase runs in ``world_size`` processes. The environment says who is who, exactly as
``torchrun`` and a Kubeflow ``PyTorchJob`` set it (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``), so the same trainer code runs:

* in one process (no variables set: every helper here is a no-op),
* in N local processes started by :func:`launch` (a pipeline component, or a test on CPU),
* across pods of a PyTorchJob (the training operator sets the variables; ``torchrun`` per pod).

Backend: ``nccl`` when the process drives a CUDA device, ``gloo`` otherwise (CPU).
A trainer uses: :func:`init_distributed` once, :func:`wrap_ddp` on each trained module,
:func:`distributed_batches` instead of ``training.loop.infinite_batches``, :func:`is_main_process`
around checkpoint/artifact writes, :func:`all_reduce_mean` for logged losses, and
:func:`cleanup` at the end.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from texinspect.devices import resolve_device
from texinspect.errors import ConfigError

log = logging.getLogger(__name__)

ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
INIT_TIMEOUT = timedelta(minutes=5)


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


_CONTEXT: DistContext | None = None


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ConfigError(f"environment variable {name}={value!r} must be an integer") from exc


def init_distributed(device: str | torch.device = "auto") -> DistContext:
    """Join the process group described by the environment (idempotent).

    ``device="auto"``: each process takes ``cuda:LOCAL_RANK`` when CUDA is present, else the CPU.
    Without ``WORLD_SIZE`` (or with 1) nothing is initialised and a single-process context is
    returned, so trainers call this unconditionally.
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
        _CONTEXT = DistContext(0, 1, 0, dev, "")
        return _CONTEXT
    for key in ("MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(key):
            raise ConfigError(f"WORLD_SIZE={world_size} but {key} is not set (torchrun/PyTorchJob set it)")
    backend = os.environ.get("TEXINSPECT_DIST_BACKEND") or ("nccl" if dev.type == "cuda" else "gloo")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size, timeout=INIT_TIMEOUT)
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


def current() -> DistContext:
    """The context set by :func:`init_distributed` (single-process if it was not called)."""
    return _CONTEXT if _CONTEXT is not None else DistContext()


def is_main_process() -> bool:
    """Rank 0 writes checkpoints, artifacts, summaries and MLflow logs; the others do not."""
    return current().is_main


def wrap_ddp(
    module: nn.Module, ctx: DistContext | None = None, find_unused_parameters: bool = False
) -> nn.Module:
    """``DistributedDataParallel(module)`` when distributed, else ``module`` itself.

    Call after moving the module to ``ctx.device`` and before building its optimizer. Frozen
    modules (no parameter requiring gradients, e.g. the phase-2 encoder) are returned unwrapped.
    On CUDA, BatchNorm layers become SyncBatchNorm so statistics cover the global batch.
    """
    ctx = ctx or current()
    if not ctx.enabled or not any(p.requires_grad for p in module.parameters()):
        return module
    if ctx.device.type == "cuda":
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
        return DistributedDataParallel(
            module, device_ids=[ctx.device.index], find_unused_parameters=find_unused_parameters
        )
    return DistributedDataParallel(module, find_unused_parameters=find_unused_parameters)


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside a DDP wrapper: what checkpoints and model artifacts store."""
    return module.module if isinstance(module, DistributedDataParallel) else module


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
    sees the same order.
    """
    ctx = ctx or current()
    n = len(dataset)  # type: ignore[arg-type]
    per_rank = max(1, n // ctx.world_size)
    batch_size = max(1, min(batch_size, per_rank))
    sampler = DistributedSampler(
        dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed, drop_last=True
    )

    def make(start_step: int) -> Iterator[Any]:
        per_epoch = max(1, per_rank // batch_size)
        epoch = start_step // per_epoch
        while True:
            sampler.set_epoch(epoch)
            loader = DataLoader(
                dataset,
                batch_size=batch_size,
                sampler=sampler,
                drop_last=per_rank >= batch_size,
                num_workers=num_workers,
                persistent_workers=False,
            )
            yield from loader
            epoch += 1

    return make


def barrier() -> None:
    if current().enabled:
        dist.barrier()


def all_reduce_mean(values: dict[str, float]) -> dict[str, float]:
    """Average logged scalars over ranks (every rank calls it with the same keys)."""
    ctx = current()
    if not ctx.enabled or not values:
        return dict(values)
    keys = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    tensor /= ctx.world_size
    return dict(zip(keys, tensor.tolist(), strict=True))


def cleanup() -> None:
    """Leave the process group (safe to call when none was joined)."""
    global _CONTEXT
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _CONTEXT = None


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
        os.environ["TEXINSPECT_DIST_BACKEND"] = backend
    fn(*args)


def launch(fn: Callable[..., Any], world_size: int, args: Sequence[Any] = (), backend: str = "") -> None:
    """Run ``fn(*args)`` in ``world_size`` local processes that form one DDP job (one node).

    ``world_size <= 1`` calls ``fn`` in this process. ``fn`` must be importable (module level)
    because the processes are spawned; it calls :func:`init_distributed` itself. A failing rank
    raises here with its traceback.
    """
    if world_size < 1:
        raise ConfigError(f"world size must be at least 1, got {world_size}")
    if world_size == 1:
        fn(*args)
        return
    mp.spawn(_entry, args=(fn, tuple(args), world_size, free_port(), backend), nprocs=world_size, join=True)


def _cli_rank(argv: list[str]) -> None:
    from texinspect.cli import main

    code = main(argv)
    cleanup()
    if code:
        raise SystemExit(code)


def launch_cli(argv: Sequence[str], world_size: int) -> None:
    """``texinspect <argv>`` in ``world_size`` processes (each calls the same CLI command)."""
    launch(_cli_rank, world_size, (list(argv),))
