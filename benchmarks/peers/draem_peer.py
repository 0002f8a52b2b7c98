"""The DRAEM peer: train, predict and time anomalib's DRAEM inside ``benchmarks/peers/.venv``.

Run by ``benchmarks/quality.py``, ``speed.py`` and ``robustness.py`` (never imported by them)::

    benchmarks/peers/.venv/bin/python benchmarks/peers/draem_peer.py train --data DATA --out RUN \\
        --image-size 256 --minutes 15 --seed 0
    benchmarks/peers/.venv/bin/python benchmarks/peers/draem_peer.py predict --model RUN/model \\
        --data DATA --out PRED
    benchmarks/peers/.venv/bin/python benchmarks/peers/draem_peer.py speed --image-size 256 --threads 2

Training follows anomalib's ``Draem`` Lightning module step for step, without Lightning's
trainer (whose epoch-based loop cannot stop at a wall-clock budget mid-epoch): its
``PerlinAnomalyGenerator`` (blend factor 0.1-1, anomaly sources = the same texture pool
texinspect synthesises from, DTD images in both cases), ``DraemModel``, ``DraemLoss`` (L2 +
2 SSIM + focal), Adam 1e-4 and MultiStepLR(400, 600 epochs, x0.1). Same normal images as
texinspect: its train/validation split, image loading and resizing, and its threshold
calibration on the held-out normal images; the artifact is texinspect's, family ``draem``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", category=FutureWarning)  # anomalib's deprecation notices on import
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "benchmarks"), str(HERE)]  # texinspect from this checkout

import anomalib  # noqa: E402
import torch  # noqa: E402
from anomalib.data.utils.generators.perlin import PerlinAnomalyGenerator  # noqa: E402
from anomalib.models.image.draem.loss import DraemLoss  # noqa: E402
from common import latency_stats, peak_rss_mb, time_calls  # noqa: E402
from draem_family import FAMILY, DraemDetector  # noqa: E402

from texinspect.calibration import calibrate  # noqa: E402
from texinspect.config import Config, load_config  # noqa: E402
from texinspect.data.datasets import ImageDataset, split_train_val  # noqa: E402
from texinspect.data.layout import scan_dataset  # noqa: E402
from texinspect.devices import resolve_device  # noqa: E402
from texinspect.models import register  # noqa: E402
from texinspect.models.artifact import ModelCard, save_detector  # noqa: E402
from texinspect.prediction import predict  # noqa: E402
from texinspect.training.common import MODEL_SUBDIR, VAL_FRACTION  # noqa: E402

register(FAMILY, "draem_family")
log = logging.getLogger("draem_peer")

LR = 1e-4  # anomalib Draem.configure_optimizers
MILESTONES = (400, 600)  # epochs
BLEND = (0.1, 1.0)  # anomalib Draem's default beta


def peer_config(args: argparse.Namespace) -> Config:
    """A texinspect config carrying the shared settings (stored in the artifact's card)."""
    overrides = [
        f"data.root={args.data}",
        f"data.image_size={args.image_size}",
        "data.channels=3",
        f"seed={args.seed}",
        f"device={args.device}",
        f"train.batch_size={args.batch_size}",
        f"train.max_minutes={args.minutes}",
        f"eval.k_sigma={args.k_sigma}",
        f"eval.score_smoothing={args.score_smoothing}",
        f"synthesis.texture_pool={args.texture_pool}",
    ]
    return load_config(REPO / "params.yaml", overrides)


def train(args: argparse.Namespace) -> Path:
    config = peer_config(args)
    torch.manual_seed(args.seed)
    device = resolve_device(args.device)
    index = scan_dataset(args.data)
    train_records, val_records = split_train_val(index.train, VAL_FRACTION, args.seed)
    train_set = ImageDataset(train_records, args.image_size, 3, cache=True)
    val_set = ImageDataset(val_records, args.image_size, 3, cache=True)
    train_set.preload()
    pool = Path(args.texture_pool) if args.texture_pool else None
    if pool is not None and not pool.is_dir():
        log.warning("texture pool %s not found: DRAEM's generator falls back to random noise sources", pool)
        pool = None
    augmenter = PerlinAnomalyGenerator(anomaly_source_path=pool, blend_factor=BLEND)
    detector = DraemDetector().to(device)
    model = detector.model
    loss_fn = DraemLoss()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(MILESTONES), gamma=0.1)
    gen = torch.Generator().manual_seed(args.seed)
    per_epoch = max(1, len(train_set) // args.batch_size)
    budget = args.minutes * 60.0
    history: list[dict[str, float]] = []
    model.train()
    step, t0 = 0, time.perf_counter()
    order = torch.randperm(len(train_set), generator=gen)
    while (not budget or time.perf_counter() - t0 < budget) and (not args.max_steps or step < args.max_steps):
        pos = (step % per_epoch) * args.batch_size
        if step and step % per_epoch == 0:
            order = torch.randperm(len(train_set), generator=gen)
            sched.step()  # Lightning steps MultiStepLR once per epoch
        images = torch.stack([train_set[int(i)]["image"] for i in order[pos : pos + args.batch_size]]).to(device)
        augmented, mask = augmenter(images)
        reconstruction, prediction = model(augmented)
        loss = loss_fn(images, reconstruction, mask, prediction)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        value = float(loss.item())
        if not math.isfinite(value):
            raise FloatingPointError(f"DRAEM: non-finite loss at step {step}")
        if step % args.log_every == 0 or step == 1:
            history.append({"step": float(step), "loss": value})
            log.info("step %d  loss %.4f  %.1f s", step, value, time.perf_counter() - t0)
    seconds = time.perf_counter() - t0
    detector.eval()
    stats = calibrate(detector, val_set, config.eval, device)
    extra = {"steps": step, "seconds": round(seconds, 1), "anomalib": str(anomalib.__version__), "torch": str(torch.__version__)}
    card = ModelCard(
        family=FAMILY,
        config=config.to_dict(),
        image_size=args.image_size,
        channels=3,
        threshold=float(stats["threshold"]),
        pixel_threshold=float(stats["pixel_threshold"]),
        normal_score_mean=float(stats["normal_score_mean"]),
        normal_score_std=float(stats["normal_score_std"]),
        score_smoothing=config.eval.score_smoothing,
        extra=extra,
    )
    out = Path(args.out)
    model_dir = save_detector(detector.cpu(), card, out / MODEL_SUBDIR)
    summary = {
        "family": FAMILY,
        "device": str(device),
        "phases": {
            "train": {
                "steps": step,
                "seconds": round(seconds, 2),
                "steps_per_second": round(step / seconds, 4) if seconds > 0 else None,
                "batch_size": args.batch_size,
            }
        },
        "history": {"train": history},
        "parameters": sum(p.numel() for p in model.parameters()),
        "n_train": len(train_set),
        "n_val": len(val_set),
        **extra,
    }
    (out / "train_summary.json").write_text(json.dumps(summary, indent=2))
    log.info("DRAEM: %d steps in %.0f s -> %s", step, seconds, model_dir)
    return model_dir


def speed(args: argparse.Namespace) -> dict[str, float]:
    """Per-image latency (batch sizes given), training images/s, peak RSS: one JSON line on stdout."""
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    detector = DraemDetector().to(device).eval()
    result: dict[str, float] = {"parameters": float(sum(p.numel() for p in detector.parameters()))}
    side = args.image_size
    for bs in args.batch_sizes:
        x = torch.rand(bs, 3, side, side, device=device)
        with torch.inference_mode():
            times = time_calls(lambda x=x: detector.anomaly_map(x), args.repeats, args.warmup, cuda)
        for key, value in latency_stats(times, per=bs).items():
            result[f"b{bs}_{key}"] = value
    result["peak_rss_infer_mb"] = peak_rss_mb()
    if args.train_steps:
        pool = Path(args.texture_pool) if args.texture_pool and Path(args.texture_pool).is_dir() else None
        augmenter = PerlinAnomalyGenerator(anomaly_source_path=pool, blend_factor=BLEND)
        model, loss_fn = detector.model.train(), DraemLoss()
        opt = torch.optim.Adam(model.parameters(), lr=LR)
        images = torch.rand(args.batch_size, 3, side, side, device=device)
        t_steps = []
        for i in range(args.train_steps + 1):  # the first step is warm-up
            t0 = time.perf_counter()
            augmented, mask = augmenter(images)
            rec, pred = model(augmented)
            loss = loss_fn(images, rec, mask, pred)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if cuda:
                torch.cuda.synchronize()
            if i:
                t_steps.append(time.perf_counter() - t0)
        result["train_images_per_s"] = args.batch_size * len(t_steps) / sum(t_steps)
        result["peak_rss_train_mb"] = peak_rss_mb()  # training ran after inference in this process
    if cuda:
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    result["torch"] = str(torch.__version__)  # type: ignore[assignment]
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train under a wall-clock budget, calibrate, write RUN/model")
    t.add_argument("--data", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--image-size", type=int, default=256)
    t.add_argument("--minutes", type=float, default=15.0)
    t.add_argument("--max-steps", type=int, default=0, help="0: only the wall clock stops training")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--texture-pool", default="../shared/datasets/texture_pool")
    t.add_argument("--k-sigma", type=float, default=3.0)
    t.add_argument("--score-smoothing", type=float, default=4.0)
    t.add_argument("--log-every", type=int, default=10)
    pr = sub.add_parser("predict", help="texinspect's predict on a DRAEM artifact")
    pr.add_argument("--model", required=True)
    pr.add_argument("--data", required=True)
    pr.add_argument("--out", required=True)
    s = sub.add_parser("speed", help="latency / throughput / memory as one JSON line")
    s.add_argument("--image-size", type=int, default=256)
    s.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    s.add_argument("--repeats", type=int, default=10)
    s.add_argument("--warmup", type=int, default=2)
    s.add_argument("--train-steps", type=int, default=3)
    s.add_argument("--batch-size", type=int, default=8, help="training batch for the throughput")
    s.add_argument("--texture-pool", default="../shared/datasets/texture_pool")
    for sp in (t, pr, s):
        sp.add_argument("--device", default="auto")
        sp.add_argument("--threads", type=int, default=2)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(args.threads)
    if args.cmd == "train":
        train(args)
    elif args.cmd == "predict":
        predict(args.model, args.data, args.out, device=args.device)
    else:
        print(json.dumps(speed(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
