"""Speed benchmark: inference latency, training throughput and peak memory of every model.

For each row (default: rbae, fmrnet, aessim and the DRAEM peer), in fresh processes of its own
(training and inference apart, so that each peak memory is that stage's): a short training run
(``--train-steps`` timed steps per phase, after one warm-up step) on the real training images
gives images/s per phase and a real artifact (FMR-Net's memory bank included); then the artifact is loaded as ``predict`` loads it and timed at ``--image-size``
px under ``torch.inference_mode``: per-image latency, median and p90, at batch 1 and batch 8, with
``--threads`` CPU threads; for FMR-Net also the patch-level early exit (encoder + nearest memory
entry) beside the pixel-level map. The same again on CUDA when a GPU is present. With ``--onnx``,
each texinspect model also gets a ``<row>-onnxruntime`` row: the same artifact exported with
``texinspect export --format onnx`` (parity-checked at export) and timed with ONNX Runtime's CPU
provider in a process of its own, same threads, batch sizes and random inputs (FMR-Net's patch
exit through ``edge.onnx``). Each model's latency is divided by the peer's, measured in the same run::

    python benchmarks/speed.py                                   # 256 px, 2 threads, all models
    python benchmarks/speed.py --rows rbae fmrnet --profile-ops  # + torch.profiler op tables
    python benchmarks/speed.py --rows rbae fmrnet --onnx         # + ONNX Runtime rows

Tables go to ``--results`` (default ``benchmarks/results``): ``speed.csv`` (or ``--csv``),
``speed.md``, ``speed.json`` (machine, command, date) and, with ``--profile-ops``,
``profile_<row>.txt`` (top ops of one inference).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    DEFAULT_DATA,
    MAIN_ROWS,
    ROWS,
    Row,
    RunSettings,
    latency_stats,
    machine_info,
    peak_rss_mb,
    print_table,
    read_train_summary,
    row_config,
    run_peer,
    select_rows,
    setup_logging,
    time_calls,
    write_outputs,
)

log = logging.getLogger("benchmarks.speed")
PEER = "draem"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", nargs="+", default=MAIN_ROWS, help=f"names or globs: {', '.join(ROWS)}")
    p.add_argument("--data", default=DEFAULT_DATA, help="training images for the throughput runs")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--repeats", type=int, default=20, help="timed calls per batch size")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--train-steps", type=int, default=5, help="timed training steps per phase (0: skip)")
    p.add_argument("--profile", default="cpu", help="params.yaml profile (default cpu)")
    p.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "params.yaml"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--profile-ops", action="store_true", help="torch.profiler table of one batch-1 inference")
    p.add_argument("--no-cuda", action="store_true", help="skip the CUDA measurements even with a GPU")
    p.add_argument("--onnx", action="store_true", help="add a <row>-onnxruntime row per model (needs the onnx extra)")
    p.add_argument("--results", default="benchmarks/results", help="where the tables go")
    p.add_argument("--csv", default=None)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: measure one row here
    p.add_argument("--json", default=None, help=argparse.SUPPRESS)
    p.add_argument("--stage", choices=["train", "infer", "onnx"], default="train", help=argparse.SUPPRESS)
    p.add_argument("--model-dir", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# --------------------------------------------------------------------------- one model (worker)


def short_training(row: Row, args: argparse.Namespace, run_dir: Path) -> tuple[Path, dict[str, float]]:
    """Train ``args.train_steps`` (+1 warm-up) steps per phase; artifact and images/s per phase."""
    from texinspect.models import family_module

    steps = max(1, args.train_steps + 1)
    settings = RunSettings(
        data=args.data, minutes=0.0, image_size=args.image_size, profile=args.profile or None,
        config_path=args.config, device="cpu",
        overrides=[
            f"train.max_steps_phase1={steps}", f"train.max_steps_phase2={steps}", "train.checkpoint_every=0",
            "train.log_every=1", *args.set,
        ],
    )
    config = row_config(row, settings, seed=0)
    model_dir = family_module(row.family).train(config, run_dir, resume=False)
    _, phases = read_train_summary(run_dir, config.train.batch_size)
    return Path(model_dir), {f"img_s_{name}": p["images_per_s"] for name, p in phases.items()}


def measure_latency(detector: Any, channels: int, args: argparse.Namespace, device: torch.device, prefix: str) -> dict[str, float]:
    """Per-image median / p90 ms at each batch size; FMR-Net's patch-level exit too."""
    out: dict[str, float] = {}
    cuda = device.type == "cuda"
    side = args.image_size
    paths = {"": detector.anomaly_map}
    if hasattr(detector, "patch_scores"):
        paths["patch_"] = detector.patch_scores
    for bs in args.batch_sizes:
        x = torch.rand(bs, channels, side, side, device=device)
        for name, fn in paths.items():
            with torch.inference_mode():
                times = time_calls(lambda fn=fn, x=x: fn(x), args.repeats, args.warmup, cuda)
            for key, value in latency_stats(times, per=bs).items():
                out[f"{prefix}{name}b{bs}_{key}"] = value
    return out


ONNX_SUFFIX = "-onnxruntime"


def measure_onnx_latency(onnx_dir: Path, channels: int, args: argparse.Namespace) -> dict[str, float]:
    """Per-image median / p90 ms of the exported graphs under ONNX Runtime (CPU provider)."""
    import numpy as np
    import onnxruntime as ort

    from texinspect.export.onnx_export import EDGE_FILE, MODEL_FILE

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    graphs = {"": (MODEL_FILE, "anomaly_map"), "patch_": (EDGE_FILE, "patch_scores")}
    sessions = {
        prefix: (ort.InferenceSession(str(onnx_dir / name), options, providers=["CPUExecutionProvider"]), output)
        for prefix, (name, output) in graphs.items()
        if (onnx_dir / name).is_file()
    }
    rng = np.random.default_rng(0)
    out: dict[str, float] = {}
    for bs in args.batch_sizes:
        x = rng.random((bs, channels, args.image_size, args.image_size), dtype=np.float32)
        for prefix, (session, output) in sessions.items():
            times = time_calls(lambda s=session, o=output, x=x: s.run([o], {"images": x}), args.repeats, args.warmup, False)
            for key, value in latency_stats(times, per=bs).items():
                out[f"cpu_{prefix}b{bs}_{key}"] = value
    return out


def profile_ops(detector: Any, channels: int, args: argparse.Namespace, path: Path) -> None:
    """Write the top ops (self CPU time) of one batch-1 inference at ``--image-size`` px."""
    from torch.profiler import ProfilerActivity, profile

    x = torch.rand(1, channels, args.image_size, args.image_size)
    with torch.inference_mode():
        detector.anomaly_map(x)  # warm-up
        with profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
            detector.anomaly_map(x)
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
    path.write_text(f"{args.worker}: one {args.image_size} px image, batch 1, {torch.get_num_threads()} threads\n\n{table}\n")


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """One stage for one row in this (fresh) process: ``train`` or ``infer`` (peak RSS is the stage's)."""
    from texinspect.models.artifact import load_detector

    torch.set_num_threads(args.threads)
    row = ROWS[args.worker]
    result: dict[str, Any] = {"row": row.name}
    if args.stage == "train":
        _, throughput = short_training(row, args, Path(args.model_dir))  # 0 train steps: 1 untimed step
        if args.train_steps:
            result.update(throughput)
        result["peak_rss_train_mb"] = peak_rss_mb()
        return result
    if args.stage == "onnx":  # the graphs the infer stage exported; only ONNX Runtime runs here
        meta = json.loads((Path(args.model_dir) / "onnx" / "texinspect_onnx.json").read_text())
        result["row"] = row.name + ONNX_SUFFIX
        result.update(measure_onnx_latency(Path(args.model_dir) / "onnx", int(meta["channels"]), args))
        # parity measured at export (random images, batch 3): the largest |onnx - torch| of any output
        result["onnx_max_abs_diff"] = max(d for f in meta["files"].values() for d in f["max_abs_diff"].values())
        result["peak_rss_infer_mb"] = peak_rss_mb()
        return result
    detector, card = load_detector(Path(args.model_dir) / "model", "cpu")
    result["parameters"] = sum(p.numel() for p in detector.parameters())
    result.update(measure_latency(detector, card.channels, args, torch.device("cpu"), "cpu_"))
    result["peak_rss_infer_mb"] = peak_rss_mb()
    if args.profile_ops:
        profile_ops(detector, card.channels, args, Path(args.results) / f"profile_{row.name}.txt")
    if torch.cuda.is_available() and not args.no_cuda:
        cuda = torch.device("cuda")
        detector.to(cuda)
        torch.cuda.reset_peak_memory_stats()
        result.update(measure_latency(detector, card.channels, args, cuda, "cuda_"))
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    if args.onnx:  # untimed: exported (and parity-checked) here, timed in the "onnx" stage's process
        from texinspect.export.onnx_export import export_onnx

        export_onnx(Path(args.model_dir) / "model", Path(args.model_dir) / "onnx")
    return result


def peer_worker(args: argparse.Namespace, device: str) -> dict[str, Any]:
    cmd = [
        "speed", "--image-size", str(args.image_size), "--threads", str(args.threads), "--device", device,
        "--repeats", str(args.repeats), "--warmup", str(args.warmup), "--train-steps", str(args.train_steps),
        "--batch-sizes", *map(str, args.batch_sizes),
    ]
    raw = json.loads(run_peer(cmd, capture=True).strip().splitlines()[-1])
    prefix = f"{device}_"
    out: dict[str, Any] = {"row": PEER}
    for key, value in raw.items():
        if key.startswith("b") and key.endswith("_ms"):
            out[prefix + key] = value
        elif key == "train_images_per_s":
            out["img_s_train"] = value
        elif device == "cpu" or key == "peak_cuda_mb":
            out[key] = value
    return out


# --------------------------------------------------------------------------- the table


def measure_all(args: argparse.Namespace) -> pd.DataFrame:
    rows = select_rows(args.rows)
    if any(r.derive_from for r in rows):
        raise SystemExit("speed.py measures trained models; derived rows (FMR-Net modalities) share fmrnet's timing")
    results = []
    for row in rows:
        log.info("=== %s", row.name)
        if row.family == PEER:
            rec = peer_worker(args, "cpu")
            if torch.cuda.is_available() and not args.no_cuda:
                rec.update({k: v for k, v in peer_worker(args, "cuda").items() if k != "row"})
            results.append(rec)
            continue
        record: dict[str, Any] = {}
        onnx_record: dict[str, Any] = {}
        stages = ("train", "infer", "onnx") if args.onnx else ("train", "infer")
        with tempfile.TemporaryDirectory(prefix=f"speed_{row.name}_") as tmp:
            for stage in stages:  # separate processes: each peak RSS is its stage's
                out_json = Path(tmp) / f"{stage}.json"
                cmd = [sys.executable, __file__, *sys_args(args), "--worker", row.name, "--stage", stage,
                       "--model-dir", tmp, "--json", str(out_json)]
                done = subprocess.run(cmd, text=True)
                if done.returncode != 0:
                    raise SystemExit(f"speed worker for {row.name} ({stage}) failed (exit {done.returncode})")
                (onnx_record if stage == "onnx" else record).update(json.loads(out_json.read_text()))
        results.append(record)
        if onnx_record:
            onnx_record["parameters"] = record.get("parameters")  # the same weights
            results.append(onnx_record)
    table = pd.DataFrame(results).set_index("row")
    return add_peer_ratios(table)


def add_peer_ratios(table: pd.DataFrame) -> pd.DataFrame:
    """``<latency column>_vs_draem``: this model's latency over the peer's (< 1: faster)."""
    table = table.copy()
    if PEER not in table.index:
        return table
    for col in [c for c in table.columns if c.endswith("median_ms") and "patch_" not in c]:
        peer = table.at[PEER, col]
        if isinstance(peer, float) and math.isfinite(peer) and peer > 0:
            table[col.replace("_median_ms", "_vs_draem")] = table[col] / peer
    return table


def sys_args(args: argparse.Namespace) -> list[str]:
    """The options a worker needs, rebuilt from ``args``."""
    out = [
        "--data", args.data, "--image-size", str(args.image_size), "--threads", str(args.threads),
        "--repeats", str(args.repeats), "--warmup", str(args.warmup), "--train-steps", str(args.train_steps),
        "--profile", args.profile, "--config", args.config, "--results", args.results,
        "--batch-sizes", *map(str, args.batch_sizes),
    ]
    for item in args.set:
        out += ["--set", item]
    if args.profile_ops:
        out.append("--profile-ops")
    if args.no_cuda:
        out.append("--no-cuda")
    if args.onnx:
        out.append("--onnx")
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    Path(args.results).mkdir(parents=True, exist_ok=True)
    if args.worker:
        Path(args.json).write_text(json.dumps(worker(args), default=float))
        return 0
    table = measure_all(args)
    meta = {**machine_info(args.threads), "image_size": args.image_size, "batch_sizes": args.batch_sizes,
            "repeats": args.repeats, "train_steps": args.train_steps, "profile": args.profile}
    csv = write_outputs(table, Path(args.results), "speed", meta, args.csv)
    shown = [c for c in table.columns if c.startswith(("cpu_", "cuda_", "img_s_", "peak_")) or c in ("parameters", "onnx_max_abs_diff")]
    print_table(
        f"Speed at {args.image_size} px, {args.threads} threads (ms per image; *_vs_draem = latency / DRAEM's):",
        table[shown].T,
    )
    print(f"\ntable: {csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
