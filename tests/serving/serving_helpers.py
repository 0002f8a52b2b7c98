"""Shared helpers for the serving tests: a real `texinspect serve` process on 127.0.0.1.

``running_server(models, tmp)`` starts the CLI in a subprocess on a free loopback port, waits (a
bounded loop) until the server and every model report ready, yields a ``RunningServer`` and always
stops the process. The toy family (``serving_toy_family``) is registered in-process and in the
server (``--family``), so protocol tests need no trained network.
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import serving_toy_family as toy
from PIL import Image

from texinspect.models import register

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
HOST = "127.0.0.1"

register(toy.FAMILY, toy.MODULE)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class RunningServer:
    base_url: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def client(self, timeout: float = 60.0) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=timeout)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.process.poll() is None


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(REPO / "src"), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    env.update(extra or {})
    return env


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextlib.contextmanager
def running_server(
    models: Sequence[str],
    workdir: Path,
    extra_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    timeout: float = 120.0,
) -> Iterator[RunningServer]:
    """``texinspect serve --model M ...`` on a free 127.0.0.1 port, stopped on exit."""
    port = free_port()
    cmd = [sys.executable, "-m", "texinspect", "serve", "--host", HOST, "--port", str(port), "--threads", "1"]
    for model in models:
        cmd += ["--model", model]
    cmd += ["--family", f"{toy.FAMILY}={toy.MODULE}", *extra_args]
    log_path = workdir / f"server-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=server_env(env),
            cwd=workdir,
            start_new_session=True,
        )
    server = RunningServer(f"http://{HOST}:{port}", port, process, log_path)
    try:
        names = [m.partition("=")[0] for m in models]
        _wait_ready(server, names, timeout)
        yield server
    finally:
        _stop(process)


def _wait_ready(server: RunningServer, names: Sequence[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=server.base_url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if not server.alive():
                pytest.fail(
                    f"server exited with {server.process.returncode}:\n{server.log_tail()}", pytrace=False
                )
            try:
                ready = client.get("/v2/health/ready").status_code == 200
                if ready and all(client.get(f"/v2/models/{n}/ready").status_code == 200 for n in names):
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
    pytest.fail(f"server not ready within {timeout:.0f} s:\n{server.log_tail()}", pytrace=False)


# --------------------------------------------------------------------------- images


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def write_images(folder: Path, count: int = 6, size: int = 40, seed: int = 0) -> list[Path]:
    """Seeded PNGs of several modes (RGB, grayscale, RGBA) at a size the model must resize."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        base = rng.random((size, size, 3))
        if i % 2:  # a bright blob: some images score high, some low
            y, x = rng.integers(5, size - 12, 2)
            base[y : y + 8, x : x + 8] = 1.0
        rgb = (base * 255).astype(np.uint8)
        mode = ("RGB", "L", "RGBA")[i % 3]
        image = Image.fromarray(rgb).convert(mode)
        path = folder / f"img_{i:02d}.png"
        image.save(path)
        paths.append(path)
    return paths
