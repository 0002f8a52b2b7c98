"""Load benchmark of `texinspect serve`: throughput, p50/p99 latency and errors at several
concurrency levels, beside the raw model's throughput without HTTP (same decode + score code).

For every model it starts two real servers on 127.0.0.1 side by side (server-side batching on and
off), sends a fixed number of V1 requests (one encoded image each) at each concurrency level from
an asyncio client, interleaving modes and levels and repeating them (medians are reported), and
stops the servers. For an FMR-Net it also reports the edge-cloud split:
edge and cloud time per image and the bytes a flagged image uploads beside its encoded size.

    .venv/bin/python benchmarks/serving_load.py --model rbae=runs/rbae/model --model fmrnet=runs/fmrnet/model \
        --requests 32 --concurrency 1 4 16 --out benchmarks/results/serving_load.json

Client and server share the machine's cores: numbers are for this machine, not a cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def sample_images(size: int, count: int, workdir: Path) -> list[bytes]:
    """Encoded PNGs of the procedural sample textures at the model's size (good and defective)."""
    from texinspect.data.sample import make_sample_dataset

    root = workdir / "images"
    per_type = max(1, count // 4)
    make_sample_dataset(root, n_train=1, n_test_good=per_type, n_test_defect_per_type=per_type, size=size)
    files = sorted((root / "test").rglob("*.png"))
    return [files[i % len(files)].read_bytes() for i in range(count)]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


# --------------------------------------------------------------------------- raw model


def raw_throughput(
    model_dir: Path, images: list[bytes], batch_sizes: list[int], threads: int, rounds: int = 3
) -> dict[str, Any]:
    """Images/s of decode + ``score_images`` in this process (no HTTP, no JSON, no PNG outputs)."""
    from texinspect.data.images import decode_image_bytes
    from texinspect.models.artifact import load_detector
    from texinspect.prediction import score_images

    torch.set_num_threads(threads)
    det, card = load_detector(model_dir, "cpu")
    decode = lambda b: decode_image_bytes(b, card.image_size, card.channels)  # noqa: E731
    out: dict[str, Any] = {}
    t = time.perf_counter()
    arrays = [decode(b) for b in images]
    out["decode_ms_per_image"] = (time.perf_counter() - t) / len(images) * 1000
    for bs in batch_sizes:
        score_images(det, card, torch.from_numpy(np.stack(arrays[:bs])))  # warm-up
        best = float("inf")
        for _ in range(rounds):  # best of a few rounds: the machine is shared, noise only adds time
            t = time.perf_counter()
            for start in range(0, len(arrays), bs):
                score_images(det, card, torch.from_numpy(np.stack(arrays[start : start + bs])))
            best = min(best, time.perf_counter() - t)
        out[f"images_per_s_batch{bs}"] = len(arrays) / best
    return out


# --------------------------------------------------------------------------- HTTP load


def start_server(
    name: str, model_dir: Path, threads: int, batching: bool, workdir: Path, max_batch: int = 8
) -> tuple[Any, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "texinspect", "serve", "--host", HOST, "--port", str(port)]
    cmd += ["--model", f"{name}={model_dir}", "--threads", str(threads), "--device", "cpu"]
    if batching:
        cmd += ["--max-batch", str(max_batch)]
    log = (workdir / f"server-{name}-{port}.log").open("wb")
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://{HOST}:{port}"
    import httpx

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}); see {log.name}")
        try:
            if httpx.get(f"{base}/v2/models/{name}/ready", timeout=2).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    stop_server(proc)
    raise RuntimeError("server not ready in 180 s")


def stop_server(proc: Any) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _load(base: str, name: str, bodies: list[bytes], concurrency: int) -> dict[str, Any]:
    import httpx

    sem = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=limits) as client:

        async def one(body: bytes) -> None:
            nonlocal errors
            async with sem:
                t = time.perf_counter()
                try:
                    r = await client.post(
                        f"/v1/models/{name}:predict",
                        content=body,
                        headers={"content-type": "application/json"},
                    )
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - t)
                errors += 0 if ok else 1

        t0 = time.perf_counter()
        await asyncio.gather(*(one(b) for b in bodies))
        wall = time.perf_counter() - t0
    return {
        "concurrency": concurrency,
        "requests": len(bodies),
        "throughput_rps": len(bodies) / wall,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "errors": errors,
        "wall_s": wall,
    }


def http_load(
    name: str,
    model_dir: Path,
    images: list[bytes],
    levels: list[int],
    requests: int,
    threads: int,
    modes: list[bool],
    workdir: Path,
    max_batch: int = 8,
    repeats: int = 3,
) -> list[dict[str, Any]]:
    """Both servers (batching on and off) run side by side; levels and modes are interleaved and
    repeated, so drifting load from other processes hits both alike. Medians over the repeats."""
    bodies = [
        json.dumps(
            {"instances": [{"image_b64": base64.b64encode(images[i % len(images)]).decode()}]}
        ).encode()
        for i in range(requests)
    ]
    servers = {}
    try:
        for batching in modes:
            servers[batching] = start_server(name, model_dir, threads, batching, workdir, max_batch)
        for _, base in servers.values():
            asyncio.run(_load(base, name, bodies[:2], 1))  # warm-up
        runs: dict[tuple[bool, int], list[dict[str, Any]]] = {}
        for _ in range(repeats):
            for level in levels:
                for batching, (_, base) in servers.items():
                    runs.setdefault((batching, level), []).append(
                        asyncio.run(_load(base, name, bodies, level))
                    )
        rows = []
        for (batching, level), reps in runs.items():
            row = {
                "batching": batching,
                "concurrency": level,
                "requests": requests,
                "repeats": len(reps),
                "throughput_rps": float(np.median([r["throughput_rps"] for r in reps])),
                "throughput_rps_runs": [r["throughput_rps"] for r in reps],
                "p50_ms": float(np.median([r["p50_ms"] for r in reps])),
                "p99_ms": float(np.median([r["p99_ms"] for r in reps])),
                "errors": int(sum(r["errors"] for r in reps)),
            }
            rows.append(row)
            print(
                f"  {name} batching={'on ' if batching else 'off'} c={level:>3}: {row['throughput_rps']:.2f} req/s "
                f"(runs {', '.join(f'{v:.1f}' for v in row['throughput_rps_runs'])}), p50 {row['p50_ms']:.0f} ms, "
                f"p99 {row['p99_ms']:.0f} ms, errors {row['errors']}",
                flush=True,
            )
        return sorted(rows, key=lambda r: (not r["batching"], r["concurrency"]))
    finally:
        for proc, _ in servers.values():
            stop_server(proc)


# --------------------------------------------------------------------------- edge split


def edge_report(model_dir: Path, images: list[bytes], workdir: Path, threads: int) -> dict[str, Any]:
    from texinspect.models.artifact import load_detector
    from texinspect.serving.edge import CloudHalf, EdgeRunner, export_edge, upload_size

    torch.set_num_threads(threads)
    path = export_edge(model_dir, workdir / "edge.pt")
    edge = EdgeRunner(path)
    det, card = load_detector(model_dir, "cpu")
    cloud = CloudHalf(det, card.image_size, "cpu")
    files = images[:4]
    batch = torch.stack([torch.from_numpy(edge.decode(b)) for b in files])
    edge.run(batch[:1])  # warm-up
    t = time.perf_counter()
    result = edge.run(batch)
    edge_ms = (time.perf_counter() - t) / len(files) * 1000
    feats = {k: torch.from_numpy(v) for k, v in result.features.items()}
    t = time.perf_counter()
    split = cloud.anomaly_map(batch, feats)
    cloud_ms = (time.perf_counter() - t) / len(files) * 1000
    t = time.perf_counter()
    full = det.anomaly_map(batch)
    full_ms = (time.perf_counter() - t) / len(files) * 1000
    sizes = upload_size(result.features, files)
    return {
        "edge_artifact_bytes": path.stat().st_size,
        "edge_ms_per_image": edge_ms,
        "cloud_ms_per_image": cloud_ms,
        "full_ms_per_image": full_ms,
        "split_equals_full_max_abs_diff": float((split - full).abs().max()),
        "flagged_share": float(result.flagged.mean()),
        **sizes,
    }


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", action="append", required=True, metavar="NAME=DIR", help="model folder (repeatable)"
    )
    parser.add_argument("--requests", type=int, default=32, help="requests per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the server and the raw run")
    parser.add_argument("--batching", choices=["on", "off", "both"], default="both")
    parser.add_argument("--max-batch", type=int, default=8, help="server --max-batch when batching is on")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats of every (mode, level)")
    parser.add_argument("--raw-images", type=int, default=16, help="images for the raw-model measurement")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)

    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__},
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "models": {},
    }
    modes = {"on": [True], "off": [False], "both": [True, False]}[args.batching]
    with tempfile.TemporaryDirectory(prefix="serving-load-") as tmp:
        workdir = Path(tmp)
        for spec in args.model:
            name, _, path = spec.partition("=")
            model_dir = Path(path)
            from texinspect.models.artifact import load_card

            card = load_card(model_dir)
            images = sample_images(card.image_size, max(args.raw_images, 8), workdir / name)
            print(
                f"{name}: {card.family}, {card.image_size} px, image file {np.mean([len(b) for b in images]):.0f} B",
                flush=True,
            )
            entry: dict[str, Any] = {"family": card.family, "image_size": card.image_size}
            entry["raw"] = raw_throughput(model_dir, images[: args.raw_images], [1, 8], args.threads)
            print(f"  raw: {json.dumps({k: round(v, 2) for k, v in entry['raw'].items()})}", flush=True)
            entry["http"] = http_load(
                name,
                model_dir,
                images,
                args.concurrency,
                args.requests,
                args.threads,
                modes,
                workdir,
                args.max_batch,
                args.repeats,
            )
            if card.family == "fmrnet":
                entry["edge"] = edge_report(model_dir, images, workdir, args.threads)
                print(f"  edge: {json.dumps({k: round(v, 3) for k, v in entry['edge'].items()})}", flush=True)
            results["models"][name] = entry
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))
    print(markdown(results))
    return 0


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "| model | batching | concurrency | requests x repeats | throughput (req/s) | p50 (ms) | p99 (ms) | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in results["models"].items():
        for row in entry["http"]:
            lines.append(
                f"| {name} | {'on' if row['batching'] else 'off'} | {row['concurrency']} | {row['requests']} x {row['repeats']} | "
                f"{row['throughput_rps']:.2f} | {row['p50_ms']:.0f} | {row['p99_ms']:.0f} | {row['errors']} |"
            )
    lines += [
        "",
        "| model | raw images/s, batch 1 | raw images/s, batch 8 | decode ms/image |",
        "|---|---|---|---|",
    ]
    for name, entry in results["models"].items():
        raw = entry["raw"]
        lines.append(
            f"| {name} | {raw['images_per_s_batch1']:.2f} | {raw['images_per_s_batch8']:.2f} | {raw['decode_ms_per_image']:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
