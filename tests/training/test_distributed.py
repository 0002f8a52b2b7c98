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

from texinspect.errors import ConfigError, ModelError
from texinspect.training import distributed

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


# --------------------------------------------------------------------------- the trainers' pattern

SHARD = 4


def _gan_parts() -> tuple[nn.Module, nn.Module, nn.Module]:
    """An encoder and a decoder called piecewise (as the trainers do) and a discriminator."""
    torch.manual_seed(SEED)
    return nn.Linear(DIM, 3), nn.Linear(3, DIM), nn.Linear(DIM, 1)


def _shard(rank: int) -> torch.Tensor:
    return torch.randn(2 * SHARD, DIM, generator=torch.Generator().manual_seed(1))[
        rank * SHARD : (rank + 1) * SHARD
    ]


def _d_loss(disc: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return disc(real).mean() - disc(fake.detach()).mean()


def _g_step(enc, dec, disc, opt_d, x, d_sync=None):  # noqa: ANN001, ANN202 (test helper)
    """FMR-Net's shape: reconstruct, update D on (real, fake) in between, then the G loss via D."""
    rec = dec(enc(x))
    d_loss = d_sync(_d_loss, disc, x, rec) if d_sync is not None else _d_loss(disc, x, rec)
    opt_d.zero_grad()
    d_loss.backward()
    d_grads = [p.grad.detach().clone() for p in disc.parameters()]
    opt_d.step()
    return (rec - x).pow(2).mean() + disc(rec).mean(), d_grads


def _nested_worker(out_dir: str) -> None:
    """One rank: a generator step through one DDPForward with a D update (another) inside it."""
    torch.set_num_threads(1)
    ctx = distributed.init_distributed("cpu")
    enc, dec, disc = _gan_parts()
    if ctx.rank == 1:  # a different start: the wrappers must not matter, broadcast_modules must
        with torch.no_grad():
            enc.weight.add_(1.0)
    before = distributed.gather_checksums([enc, dec, disc])
    distributed.broadcast_modules([enc, dec, disc])
    after = distributed.gather_checksums([enc, dec, disc])
    opt_g = torch.optim.SGD([*enc.parameters(), *dec.parameters()], lr=0.1)
    opt_d = torch.optim.SGD(disc.parameters(), lr=0.1)
    g_sync = distributed.DDPForward([enc, dec])
    d_sync = distributed.DDPForward([disc])
    loss, d_grads = g_sync(_g_step, enc, dec, disc, opt_d, _shard(ctx.rank), d_sync)
    opt_g.zero_grad()
    loss.backward()
    g_grads = [p.grad.detach().clone() for p in [*enc.parameters(), *dec.parameters()]]
    opt_g.step()
    # BatchNorm-like buffers of every dtype the trainers have (float, long, bool) follow rank 0
    bn = nn.BatchNorm1d(2)
    bn.register_buffer("ready", torch.tensor(ctx.rank == 0))
    bn(torch.randn(4, 2) + ctx.rank)
    distributed.broadcast_modules([bn])
    torch.save(
        {
            "distributed": g_sync.distributed and d_sync.distributed,
            "before": before,
            "after": after,
            "d_grads": d_grads,
            "g_grads": g_grads,
            "params": [p.detach().clone() for m in (enc, dec, disc) for p in m.parameters()],
            "bn": {k: v.clone() for k, v in bn.state_dict().items()} | {"ready": bn.ready.clone()},
            "final": distributed.gather_checksums([enc, dec, disc]),
        },
        Path(out_dir) / f"nested{ctx.rank}.pt",
    )


def _reference_grads() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The same step in one process: D's and G's gradients are the means over the two shards."""
    d_parts = []
    for rank in (0, 1):
        enc, dec, disc = _gan_parts()
        rec = dec(enc(_shard(rank)))
        _d_loss(disc, _shard(rank), rec).backward()
        d_parts.append([p.grad for p in disc.parameters()])
    d_mean = [(a + b) / 2 for a, b in zip(*d_parts, strict=True)]
    g_parts = []
    for rank in (0, 1):
        enc, dec, disc = _gan_parts()
        with torch.no_grad():  # the D step every rank took with the averaged gradient
            for p, g in zip(disc.parameters(), d_mean, strict=True):
                p.sub_(0.1 * g)
        x = _shard(rank)
        rec = dec(enc(x))
        ((rec - x).pow(2).mean() + disc(rec).mean()).backward()
        g_parts.append([p.grad for p in [*enc.parameters(), *dec.parameters()]])
    return d_mean, [(a + b) / 2 for a, b in zip(*g_parts, strict=True)]


@pytest.mark.timeout(180)
def test_nested_ddp_forwards_average_each_modules_gradients(tmp_path: Path) -> None:
    """The pattern FMR-Net uses: a D update inside the generator's DDP forward; both synced."""
    distributed.launch(_nested_worker, world_size=2, args=(str(tmp_path),), backend="gloo")
    r0, r1 = (torch.load(tmp_path / f"nested{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["distributed"] and r1["distributed"]
    assert r0["before"][0] != r0["before"][1]  # the checksum sees the different start ...
    assert r0["after"][0] == r0["after"][1] == r1["after"][1]  # ... and the broadcast fixes it
    d_ref, g_ref = _reference_grads()
    for rank in (r0, r1):
        for got, want in zip(rank["d_grads"], d_ref, strict=True):
            torch.testing.assert_close(got, want)
        for got, want in zip(rank["g_grads"], g_ref, strict=True):
            torch.testing.assert_close(got, want)
    for a, b in zip(r0["params"], r1["params"], strict=True):
        assert torch.equal(a, b)
    assert r0["final"][0] == r0["final"][1]
    for key, value in r0["bn"].items():
        assert torch.equal(value, r1["bn"][key]), key
    assert bool(r1["bn"]["ready"]) and int(r1["bn"]["num_batches_tracked"]) == 1


def test_checksums_sync_check_and_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    assert distributed.weight_checksum([a]) == distributed.weight_checksum([a])
    assert distributed.weight_checksum([a, b]) != distributed.weight_checksum([b, a])  # order counts
    distributed.check_in_sync([1.0, 1.0 + 1e-9], "phase1")  # float noise is not divergence
    with pytest.raises(ModelError, match="phase1: DDP ranks hold different weights"):
        distributed.check_in_sync([1.0, 1.5], "phase1")
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "90")
    assert distributed._timeout().total_seconds() == 90 * 60
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "soon")
    with pytest.raises(ConfigError, match="TEXINSPECT_DIST_TIMEOUT_MINUTES"):
        distributed._timeout()
