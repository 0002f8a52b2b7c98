"""DDP on CPU: 2 processes with gloo average their gradients and stay in lock-step.

Each rank sees a different shard of a small dataset; after one SGD step both ranks must hold
the same parameters, and the gradient must equal the mean of the two shards' gradients
computed here in one process without DDP.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from texinspect.errors import ConfigError
from texinspect.pipeline import distributed

N, DIM, BATCH, SEED = 16, 5, 4, 7


def _data() -> TensorDataset:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(N, DIM, generator=gen)
    y = torch.randn(N, 1, generator=gen)
    return TensorDataset(torch.arange(N), x, y)


def _model() -> nn.Module:
    torch.manual_seed(SEED)
    return nn.Sequential(nn.Linear(DIM, 8), nn.Tanh(), nn.Linear(8, 1))


def _worker(out_dir: str) -> None:
    """One rank: build the same model, one step on its shard, save what it saw and holds."""
    torch.set_num_threads(1)
    ctx = distributed.init_distributed("cpu")
    if ctx.rank == 0:
        plain = _model()
    else:  # a different start on purpose: DDP must broadcast rank 0's weights when it wraps
        torch.manual_seed(100 + ctx.rank)
        plain = nn.Sequential(nn.Linear(DIM, 8), nn.Tanh(), nn.Linear(8, 1))
    model = distributed.wrap_ddp(plain, ctx)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    idx, x, y = next(distributed.distributed_batches(_data(), BATCH, seed=SEED, ctx=ctx)(0))
    loss = nn.functional.mse_loss(model(x), y)
    opt.zero_grad()
    loss.backward()
    grads = [p.grad.detach().clone() for p in distributed.unwrap(model).parameters()]
    opt.step()
    logged = distributed.all_reduce_mean({"loss": float(loss)})
    torch.save(
        {
            "rank": ctx.rank,
            "world_size": ctx.world_size,
            "backend": ctx.backend,
            "is_main": distributed.is_main_process(),
            "idx": idx,
            "loss": float(loss),
            "logged": logged["loss"],
            "grads": grads,
            "params": [p.detach().clone() for p in distributed.unwrap(model).parameters()],
        },
        Path(out_dir) / f"rank{ctx.rank}.pt",
    )
    distributed.cleanup()


@pytest.mark.timeout(180)
def test_two_cpu_processes_average_gradients(tmp_path: Path) -> None:
    distributed.launch(_worker, world_size=2, args=(str(tmp_path),), backend="gloo")
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert (r0["world_size"], r1["world_size"]) == (2, 2)
    assert r0["backend"] == r1["backend"] == "gloo"
    assert r0["is_main"] and not r1["is_main"]
    # the shards are disjoint: DistributedSampler splits the shuffled epoch
    assert not set(r0["idx"].tolist()) & set(r1["idx"].tolist())
    # logged losses are averaged over ranks
    assert r0["logged"] == pytest.approx((r0["loss"] + r1["loss"]) / 2)
    assert r1["logged"] == pytest.approx(r0["logged"])
    # same parameters on both ranks after the step
    for a, b in zip(r0["params"], r1["params"], strict=True):
        torch.testing.assert_close(a, b)
    # the DDP gradient is the mean of the per-shard gradients
    _, x, y = _data().tensors
    expected = []
    for idx in (r0["idx"], r1["idx"]):
        model = _model()
        nn.functional.mse_loss(model(x[idx]), y[idx]).backward()
        expected.append([p.grad for p in model.parameters()])
    for g0, g1, e0, e1 in zip(r0["grads"], r1["grads"], *expected, strict=True):
        torch.testing.assert_close(g0, (e0 + e1) / 2)
        torch.testing.assert_close(g1, g0)
    # and the update is plain SGD on that mean gradient from the shared start
    for p, g, start in zip(r0["params"], r0["grads"], _model().parameters(), strict=True):
        torch.testing.assert_close(p, start.detach() - 0.1 * g)


def test_single_process_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in distributed.ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    distributed.cleanup()
    ctx = distributed.init_distributed("cpu")
    try:
        assert not ctx.enabled and ctx.is_main and distributed.is_main_process()
        module = nn.Linear(2, 2)
        assert distributed.wrap_ddp(module, ctx) is module
        assert distributed.all_reduce_mean({"a": 2.0}) == {"a": 2.0}
        batches = distributed.distributed_batches(_data(), BATCH, seed=SEED, ctx=ctx)(0)
        seen = torch.cat([next(batches)[0] for _ in range(N // BATCH)])
        assert sorted(seen.tolist()) == list(range(N))  # one rank: every sample once per epoch
    finally:
        distributed.cleanup()


def test_bad_environment_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    distributed.cleanup()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(ConfigError, match="MASTER_ADDR"):
        distributed.init_distributed("cpu")
    monkeypatch.setenv("RANK", "5")
    with pytest.raises(ConfigError, match="RANK=5"):
        distributed.init_distributed("cpu")
    with pytest.raises(ConfigError, match="at least 1"):
        distributed.launch(print, world_size=0)
