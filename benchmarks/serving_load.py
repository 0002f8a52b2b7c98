"""Load benchmark of `texinspect serve`: throughput, p50/p99 latency and errors at several
concurrency levels, beside the raw model's throughput without HTTP (same decode + score code).

For every model it starts two real servers on 127.0.0.1 side by side (server-side batching on and
off), sends a fixed number of V1 requests (one encoded image each) at each concurrency level from
an asyncio client, interleaving modes and levels and repeating them (medians are reported), and
stops the servers. For an FMR-Net it also reports the edge-cloud split:
edge and cloud time per image and the bytes a flagged image uploads beside its encoded size.

    .venv/bin/python benchmarks/serving_load.py --model rbae=runs/rbae/model --model fmrnet=runs/fmrnet/model \
        --requests 32 --concurrency 1 4 16 --out benchmarks/results/serving_load.json

``--bad-share S`` is the robustness run instead (issue 20): one server, ``--requests`` requests at the
first ``--concurrency`` level, a share S of them bad in every way the server must answer with a 4xx
(``BAD_KINDS``), and a few large 16-bit PNGs among the good ones. It counts statuses, 5xx and
connection errors, samples the server's RSS, and counts the server log's lines: a bad request must
add exactly one line (a WARNING) to what a good one logs, and no traceback:

    .venv/bin/python benchmarks/serving_load.py --model rbae=runs/rbae/model --requests 10000 \
        --concurrency 16 --bad-share 0.2 --out benchmarks/results/serving_robustness.json

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
    log = server_log(workdir, name, port).open("wb")
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


def server_log(workdir: Path, name: str, port: int) -> Path:
    return workdir / f"server-{name}-{port}.log"


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


# --------------------------------------------------------------------------- robustness (bad requests)


def _png16(side: int) -> bytes:
    """A 16-bit grayscale PNG of ``side`` x ``side`` that compresses well (a ramp): a large upload
    within the default limits (6000 px: 36 M pixels in ~0.6 MB)."""
    import io

    from PIL import Image

    ramp = np.tile(np.linspace(0, 65535, side).astype(np.uint16), (side, 1))
    buf = io.BytesIO()
    Image.fromarray(ramp).save(buf, format="PNG")
    return buf.getvalue()


def bad_kinds(name: str, size: int, good_png: bytes) -> dict[str, tuple[str, str, bytes, dict[str, str], int]]:
    """Every kind of bad request of issue 20's probes: kind -> (method, path, body, headers, status)."""
    import io

    from PIL import Image

    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    as_json = {"content-type": "application/json"}
    v1, v2 = f"/v1/models/{name}:predict", f"/v2/models/{name}/infer"

    def v1_body(data: bytes) -> bytes:
        return json.dumps({"instances": [{"image_b64": b64(data)}]}).encode()

    def tensor(shape: list[int], count: int, value: float = 0.5) -> bytes:
        return json.dumps(
            {"inputs": [{"name": "image_tensor", "datatype": "FP32", "shape": shape, "data": [value] * count}]}
        ).encode()

    nan = io.BytesIO()
    Image.fromarray(np.full((64, 64), np.nan, np.float32), mode="F").save(nan, format="TIFF")
    bomb = io.BytesIO()
    Image.new("L", (7000, 7000)).save(bomb, format="PNG")  # 49 M pixels, over the default 36 M
    per_image = 3 * size * size
    wrap = next(k for k in range(1, 64) if (2**k * per_image) % 2**64 == 0)  # int64 product wraps here
    header = json.dumps(
        {"inputs": [{"name": "image_tensor", "datatype": "FP32", "shape": [1, 3, size, size],
                     "parameters": {"binary_data_size": 10**9}}]}
    ).encode()  # fmt: skip
    return {
        "v1-bad-base64": ("POST", v1, b'{"instances": [{"image_b64": "not*base64!"}]}', as_json, 400),
        "v1-truncated-png": ("POST", v1, v1_body(good_png[: len(good_png) // 2]), as_json, 400),
        "v1-nan-tiff": ("POST", v1, v1_body(nan.getvalue()), as_json, 400),
        "v1-decompression-bomb": ("POST", v1, v1_body(bomb.getvalue()), as_json, 400),
        "v1-malformed-json": ("POST", v1, b'{"instances": [', as_json, 400),
        "v1-unknown-model": ("POST", "/v1/models/nosuchmodel:predict", v1_body(good_png), as_json, 404),
        "v1-get-predict": ("GET", v1, b"", {}, 405),
        "v2-wrong-shape": ("POST", v2, tensor([1, 3, size, size - 1], per_image - 3 * size), as_json, 400),
        "v2-out-of-range": ("POST", v2, tensor([1, 3, size, size], per_image, 3.0), as_json, 400),
        "v2-shape-overflow": ("POST", v2, tensor([2**wrap + 1, 3, size, size], per_image), as_json, 400),
        "v2-missing-data": ("POST", v2, b'{"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1]}]}', as_json, 422),
        "v2-text-plain": ("POST", v2, tensor([1, 3, size, size], per_image), {"content-type": "text/plain"}, 415),
        "v2-binary-size-past-body": (
            "POST", v2, header + np.zeros(per_image, "<f4").tobytes(),
            {"content-type": "application/octet-stream", "inference-header-content-length": str(len(header))}, 400,
        ),
    }  # fmt: skip


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _log_counts(path: Path) -> dict[str, int]:
    text = path.read_text(errors="replace")
    lines = text.splitlines()
    return {
        "lines": len(lines),
        "bytes": len(text.encode()),
        "client_error_lines": sum(" WARNING texinspect.serving.http: 4" in line for line in lines),
        "tracebacks": text.count("Traceback (most recent call last)"),
        "error_lines": sum(" ERROR " in line for line in lines),
    }


async def _mixed_load(
    base: str, plan: list[tuple[str, str, str, bytes, dict[str, str], int]], concurrency: int, pid: int
) -> dict[str, Any]:
    """Send ``plan`` (kind, method, path, body, headers, expected status) at ``concurrency``; sample RSS."""
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    statuses: dict[str, dict[str, int]] = {}
    unexpected: dict[str, int] = {}
    transport_errors: dict[str, int] = {}
    rss: list[tuple[float, float]] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(plan)):
        queue.put_nowait(i)
    done = asyncio.Event()
    t0 = time.perf_counter()

    async def sample() -> None:
        while not done.is_set():
            rss.append((time.perf_counter() - t0, _rss_mb(pid)))
            try:
                await asyncio.wait_for(done.wait(), timeout=1.0)
            except TimeoutError:
                pass

    async with httpx.AsyncClient(base_url=base, timeout=600, limits=limits) as client:

        async def worker() -> None:
            while not queue.empty():
                kind, method, path, body, headers, want = plan[queue.get_nowait()]
                try:
                    r = await client.request(method, path, content=body or None, headers=headers)
                    statuses.setdefault(kind, {}).setdefault(str(r.status_code), 0)
                    statuses[kind][str(r.status_code)] += 1
                    if r.status_code != want:
                        key = f"{kind}: {r.status_code} (want {want})"
                        unexpected[key] = unexpected.get(key, 0) + 1
                except httpx.TransportError as exc:
                    key = f"{kind}: {type(exc).__name__}"
                    transport_errors[key] = transport_errors.get(key, 0) + 1

        sampler = asyncio.create_task(sample())
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        done.set()
        await sampler
    rss.append((time.perf_counter() - t0, _rss_mb(pid)))
    return {"wall_s": time.perf_counter() - t0, "statuses": statuses, "unexpected": unexpected,
            "transport_errors": transport_errors, "rss": rss}  # fmt: skip


def robustness(
    name: str,
    model_dir: Path,
    requests: int,
    concurrency: int,
    bad_share: float,
    threads: int,
    workdir: Path,
    large_every: int = 500,
    warmup: int = 300,
    seed: int = 0,
) -> dict[str, Any]:
    """One server (batching off), ``warmup`` good requests, then ``requests`` mixed ones (see module doc)."""
    from texinspect.models.artifact import load_card

    card = load_card(model_dir)
    images = sample_images(card.image_size, 8, workdir / name)
    kinds = bad_kinds(name, card.image_size, images[0])
    good = [("good", "POST", f"/v1/models/{name}:predict",
             json.dumps({"instances": [{"image_b64": base64.b64encode(img).decode()}]}).encode(),
             {"content-type": "application/json"}, 200) for img in images]  # fmt: skip
    large = ("good-large-16bit-png", "POST", f"/v1/models/{name}:predict",
             json.dumps({"instances": [{"image_b64": base64.b64encode(_png16(6000)).decode()}]}).encode(),
             {"content-type": "application/json"}, 200)  # fmt: skip
    bad = [(kind, *spec) for kind, spec in kinds.items()]
    rng = np.random.default_rng(seed)
    plan = []
    for i in range(requests):
        if rng.random() < bad_share:
            plan.append(bad[int(rng.integers(len(bad)))])
        elif large_every and i % large_every == large_every // 2:
            plan.append(large)
        else:
            plan.append(good[i % len(good)])
    proc, base = start_server(name, model_dir, threads, False, workdir)
    port = int(base.rsplit(":", 1)[1])
    log_path = server_log(workdir, name, port)
    try:
        started = _log_counts(log_path)
        warm = asyncio.run(_mixed_load(base, [good[i % len(good)] for i in range(warmup)], concurrency, proc.pid))
        time.sleep(1.0)
        before = _log_counts(log_path)
        rss_start = _rss_mb(proc.pid)
        run = asyncio.run(_mixed_load(base, plan, concurrency, proc.pid))
        time.sleep(1.0)
        rss_end = _rss_mb(proc.pid)
        after = _log_counts(log_path)
        alive = proc.poll() is None
    finally:
        stop_server(proc)
    n_bad = sum(1 for p in plan if p[0] not in ("good", "good-large-16bit-png"))
    n_good = requests - n_bad
    warm_lines = (before["lines"] - started["lines"]) / max(1, warmup)  # what a good request logs
    lines = after["lines"] - before["lines"]
    samples = [v for _, v in run["rss"]]
    half = samples[len(samples) // 2 :]
    status_totals: dict[str, int] = {}
    for per_kind in run["statuses"].values():
        for code, n in per_kind.items():
            status_totals[code] = status_totals.get(code, 0) + n
    result = {
        "model": name,
        "family": card.family,
        "image_size": card.image_size,
        "requests": requests,
        "concurrency": concurrency,
        "bad_requests": n_bad,
        "bad_kinds": len(bad),
        "good_requests": n_good,
        "large_16bit_png_requests": sum(1 for p in plan if p[0] == "good-large-16bit-png"),
        "wall_s": run["wall_s"],
        "throughput_rps": requests / run["wall_s"],
        "status_totals": dict(sorted(status_totals.items())),
        "statuses_by_kind": run["statuses"],
        "unexpected_statuses": run["unexpected"],
        "responses_5xx": sum(n for code, n in status_totals.items() if code.startswith("5")),
        "connection_errors": sum(run["transport_errors"].values()),
        "transport_errors": run["transport_errors"],
        "server_alive_after": alive,
        "rss_mb": {
            "after_warmup": rss_start,
            "end": rss_end,
            "max": max(samples),
            "min": min(samples),
            "second_half_min": min(half),
            "second_half_max": max(half),
            "samples": len(samples),
        },
        "log": {
            "lines_per_warmup_request": warm_lines,
            "lines_added": lines,
            "bytes_added": after["bytes"] - before["bytes"],
            "client_error_lines_added": after["client_error_lines"] - before["client_error_lines"],
            "lines_added_beyond_one_per_bad": lines - (after["client_error_lines"] - before["client_error_lines"]),
            "tracebacks_added": after["tracebacks"] - before["tracebacks"],
            "error_lines_added": after["error_lines"] - before["error_lines"],
        },
        "warmup": {"requests": warmup, "statuses": warm["statuses"]},
    }
    print(robustness_markdown(result), flush=True)
    return result


def robustness_markdown(r: dict[str, Any]) -> str:
    rss, log = r["rss_mb"], r["log"]
    return "\n".join(
        [
            "| figure | value |",
            "|---|---|",
            f"| requests (concurrency {r['concurrency']}) | {r['requests']} in {r['wall_s']:.0f} s ({r['throughput_rps']:.1f} req/s) |",
            f"| bad requests | {r['bad_requests']} ({100 * r['bad_requests'] / r['requests']:.1f} %), {r['bad_kinds']} kinds |",
            f"| good requests (of them 6000x6000 16-bit PNGs) | {r['good_requests']} ({r['large_16bit_png_requests']}) |",
            f"| statuses | {', '.join(f'{k}: {v}' for k, v in r['status_totals'].items())} |",
            f"| answers not as expected | {sum(r['unexpected_statuses'].values())} |",
            f"| 5xx | {r['responses_5xx']} |",
            f"| connection errors | {r['connection_errors']} |",
            f"| server RSS (MB): after warm-up, min-max during the run, end | {rss['after_warmup']:.0f}, {rss['min']:.0f}-{rss['max']:.0f}, {rss['end']:.0f} |",
            f"| log lines added / of them client-error WARNINGs | {log['lines_added']} / {log['client_error_lines_added']} |",
            f"| log lines per request besides those WARNINGs | {log['lines_added_beyond_one_per_bad'] / r['requests']:.2f} |",
            f"| tracebacks / ERROR lines in the log | {log['tracebacks_added']} / {log['error_lines_added']} |",
        ]
    )


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
    parser.add_argument(
        "--bad-share", type=float, default=0.0,
        help="robustness run: this share of --requests is bad (4xx expected), at the first --concurrency",
    )  # fmt: skip
    parser.add_argument("--large-every", type=int, default=500, help="robustness run: a 6000 px 16-bit PNG every N")
    args = parser.parse_args(argv)
    if args.bad_share > 0:
        return robustness_main(args)

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


def robustness_main(args: argparse.Namespace) -> int:
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "load_average_before": os.getloadavg(),
        },
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "models": {},
    }
    with tempfile.TemporaryDirectory(prefix="serving-robustness-") as tmp:
        for spec in args.model:
            name, _, path = spec.partition("=")
            results["models"][name] = robustness(
                name, Path(path), args.requests, args.concurrency[0], args.bad_share, args.threads, Path(tmp),
                large_every=args.large_every,
            )  # fmt: skip
    results["machine"]["load_average_after"] = os.getloadavg()
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))
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
