"""``make demo``: the main job end to end on one machine, with the embedded defaults.

1. data: the procedural sample dataset (``data/sample``, byte-reproducible, the version DVC
   records in ``data.dvc``) unless ``--data`` names a real folder; ``texinspect data check``;
   the dataset is pushed to the local DVC remote when DVC is usable here;
2. the Kubeflow training pipeline with the local runner (synthesize, phase 1, memory bank,
   phase 2, evaluate, register with the champion quality gate in SQLite MLflow, deploy);
3. a local KServe server on 127.0.0.1 with the trained model, answering one V1 and one V2
   request for a test image, then stopped.

Each step is the same CLI command a person would type; this module only strings them together,
which is why it lives in the ``cli`` package (``python -m texinspect.cli.demo``).
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from texinspect.cli import main as cli
from texinspect.cli.demo_console import run_quietly
from texinspect.evaluation import OVERVIEW_FILE
from texinspect.kubeflow.local import latest_run

log = logging.getLogger("texinspect.demo")
SAMPLE_DIR = Path("data/sample")
PIPELINE_LOG = "pipeline.log"  # under --out: everything the local pipeline run printed


def _step(title: str) -> None:
    print(f"\n=== {title}", flush=True)


def _run(argv: list[str]) -> None:
    print("$ texinspect " + " ".join(argv), flush=True)
    code = cli(argv)
    if code:
        raise SystemExit(f"demo: `texinspect {' '.join(argv)}` failed with exit code {code}")


def prepare_data(data: str | None) -> Path:
    if data:
        return Path(data)
    if not (SAMPLE_DIR / "train" / "good").is_dir():
        _run(["data", "sample", str(SAMPLE_DIR)])
    return SAMPLE_DIR


def push_to_dvc_remote() -> None:
    """Version the sample data in the local DVC remote (skipped, and said, where DVC can't run)."""
    dvc = Path(sys.executable).with_name("dvc")
    if not dvc.exists() or not Path(".dvc").is_dir() or not Path(".git").exists():
        print("DVC: not a DVC checkout here; skipping the push to the local remote")
        return
    # The sample is byte-reproducible, so its hash is the one data.dvc records: commit it to the
    # cache (data.dvc is unchanged) and push it to the local remote.
    commit = subprocess.run([str(dvc), "commit", "--force", "data.dvc"], capture_output=True, text=True)
    if commit.returncode != 0:
        print(f"DVC commit: {commit.stderr.strip() or commit.stdout.strip()}")
        return
    status = subprocess.run([str(dvc), "status", "data.dvc"], capture_output=True, text=True)
    print("DVC status: " + (status.stdout.strip() or status.stderr.strip()))
    push = subprocess.run([str(dvc), "push", "data.dvc"], capture_output=True, text=True)
    print(("DVC: " + push.stdout.strip().splitlines()[-1]) if push.returncode == 0 and push.stdout.strip() else
          f"DVC push: {push.stderr.strip() or push.stdout.strip()}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str, payload: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:  # noqa: S310 - loopback only
        return json.loads(resp.read())


def serve_and_query(model_dir: Path, image: Path) -> None:
    """Start ``texinspect serve`` on 127.0.0.1, send one V1 and one V2 request, stop it."""
    port = _free_port()
    cmd = [sys.executable, "-m", "texinspect", "serve", "--model", f"demo={model_dir}",
           "--host", "127.0.0.1", "--port", str(port), "--threads", "2"]
    print("$ " + " ".join(cmd[2:]), flush=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"demo: the server exited early: {proc.stderr.read() if proc.stderr else ''}")
            try:
                with urllib.request.urlopen(f"{base}/v2/models/demo/ready", timeout=2) as r:  # noqa: S310
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("demo: the server did not become ready within 120 s")
            time.sleep(0.5)
        b64 = base64.b64encode(image.read_bytes()).decode()
        v1 = _post(f"{base}/v1/models/demo:predict", {"instances": [{"image_b64": b64}]})
        print(f"V1 {image.name}: {json.dumps(v1['predictions'][0])[:300]}")
        v2 = _post(
            f"{base}/v2/models/demo/infer",
            {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [b64]}]},
        )
        outs = {o["name"]: o["data"] for o in v2["outputs"]}
        print(f"V2 {image.name}: " + ", ".join(f"{k}={v}" for k, v in outs.items())[:300])
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m texinspect.cli.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="dataset folder (default: the procedural sample)")
    parser.add_argument("--out", default="runs/demo")
    parser.add_argument("--model", default="rbae", help="rbae | fmrnet")
    parser.add_argument(
        "--profile", default="demo", help="params.yaml profile (demo: ~2.5 min of training on 2 cores; smoke: plumbing only)"
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a params.yaml key for the pipeline, e.g. --set seed=1 (repeatable)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    t0 = time.perf_counter()

    _step("1. data")
    data = prepare_data(args.data)
    _run(["data", "check", str(data)])
    if not args.data:
        push_to_dvc_remote()

    _step("2. training pipeline (Kubeflow, local runner)")
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    pipeline = ["pipeline", "run", "--local", "--data", str(data), "--out", str(out),
                "--model", args.model, "--profile", args.profile, *[f"--set={kv}" for kv in args.set]]  # fmt: skip
    print("$ texinspect " + " ".join(pipeline), flush=True)
    log_path = out / PIPELINE_LOG
    print(f"  (every task's full output: {log_path})", flush=True)
    if run_quietly([sys.executable, "-m", "texinspect", *pipeline], log_path):
        raise SystemExit("demo: the training pipeline failed (see above)")
    run = latest_run(out)
    model_dir, evaluation = run.artifact("train-phase2", "model"), run.artifact("evaluate-model", "evaluation")
    if not run.metrics:
        raise SystemExit(f"demo: the pipeline wrote no metrics.json under {evaluation}")

    _step("3. local KServe server")
    from texinspect.data.layout import records_for_prediction

    tests = [r for r in records_for_prediction(data) if r.label == 1] or records_for_prediction(data)
    serve_and_query(model_dir, tests[0].path)

    _step(f"done in {time.perf_counter() - t0:.0f} s: test split of {data}")
    print(result_table(run.metrics))
    print(f"model:   {model_dir}")
    print(f"MLflow:  .venv/bin/mlflow ui --backend-store-uri sqlite:///{(out / 'mlflow.db').resolve()}")
    overview = evaluation / OVERVIEW_FILE
    if overview.is_file():  # last, so that it is the line a person sees
        print(f"picture: {overview}  (red: true defect, green: found; also in the MLflow run)")
    return 0


def result_table(m: dict) -> str:
    """The few numbers a newcomer needs, as a small Markdown table (``n/a`` where not measurable)."""

    def fmt(key: str) -> str:
        value = m.get(key)
        return f"{value:.3f}" if isinstance(value, (int, float)) else "n/a"

    rows = [
        ("image AUROC (is the image defective?)", "image_auroc"),
        ("pixel AUROC (where is the defect?)", "pixel_auroc"),
        ("AUPRO (each defect region found)", "aupro"),
        ("image precision / recall / F1 at the model's threshold", ("precision", "recall", "f1")),
        ("pixel F1 at the model's pixel threshold", "pixel_f1"),
    ]
    lines = ["| measure | value |", "|---|---:|"]
    for label, keys in rows:
        value = " / ".join(fmt(k) for k in keys) if isinstance(keys, tuple) else fmt(keys)
        lines.append(f"| {label} | {value} |")
    counts = f"{m.get('n_good', '?')} good and {m.get('n_defect', '?')} defective images"
    return "\n".join([*lines, f"({counts})" if "n_good" in m else ""]).rstrip()


if __name__ == "__main__":
    sys.exit(main())
