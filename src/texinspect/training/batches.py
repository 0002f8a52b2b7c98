"""Endless training batches that a resumed run can enter in the middle of an epoch.

A run killed at step ``k`` must see, after resuming, exactly the batches an uninterrupted run sees
from step ``k`` on. So the order of epoch ``e`` is a pure function of the seed and ``e`` (never of
the global RNG), the batches of that epoch already trained on are skipped as index lists (no image
is loaded or synthesized for them), and a dataset with ``set_epoch`` (synthetic defects, drawn from
``(seed, epoch, index)``) is told the epoch before its loader starts. Nothing here draws from the
global torch, numpy or Python RNG, so resuming does not shift the streams the training steps use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

EpochOrder = Callable[[int], list[int]]  # epoch -> dataset indices in the order that epoch visits them


def split_batches(order: list[int], batch_size: int, drop_last: bool) -> list[list[int]]:
    """Consecutive batches of ``order``; the short last one is dropped when ``drop_last``."""
    stop = len(order) - len(order) % batch_size if drop_last else len(order)
    return [order[i : i + batch_size] for i in range(0, stop, batch_size)]


def resumable_batches(
    dataset: Dataset,
    batch_size: int,
    epoch_order: EpochOrder,
    loader_seed: int,
    num_workers: int = 0,
    drop_last: bool = True,
    worker_init_fn: Callable[[int], None] | None = None,
) -> Callable[[int], Iterator[Any]]:
    """Factory ``start_step -> iterator of batches`` for ``training.loop.run_phase``.

    ``loader_seed`` seeds each epoch's DataLoader generator (its workers' base seed), so the
    DataLoader draws nothing from the global RNG either.
    """

    def make(start_step: int) -> Iterator[Any]:
        per_epoch = len(split_batches(epoch_order(0), batch_size, drop_last))  # the same every epoch
        if per_epoch == 0:
            raise ValueError(f"no batch of {batch_size} fits one epoch of this dataset")
        epoch, skip = divmod(start_step, per_epoch)
        while True:
            if hasattr(dataset, "set_epoch"):  # before the loader exists: workers copy the dataset
                dataset.set_epoch(epoch)
            batches = split_batches(epoch_order(epoch), batch_size, drop_last)
            loader = DataLoader(
                dataset,
                batch_sampler=batches[skip:],
                num_workers=num_workers,
                worker_init_fn=worker_init_fn,
                generator=torch.Generator().manual_seed(loader_seed * 100_003 + epoch),
                persistent_workers=False,
            )
            skip = 0
            yield from loader
            epoch += 1

    return make
