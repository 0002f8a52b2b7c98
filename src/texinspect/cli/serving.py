"""``texinspect serve`` and ``texinspect edge-export``: argument parsing only.

The work is :mod:`texinspect.serving.server` (KServe's ModelServer around
:class:`texinspect.serving.predictor.TexinspectModel`) and :func:`texinspect.serving.edge.export_edge`.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence

from texinspect.errors import ConfigError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def split_model_arg(text: str) -> tuple[str | None, str]:
    """``NAME=URI`` -> (NAME, URI); a plain URI (which may itself contain '=') -> (None, URI)."""
    name, sep, uri = text.partition("=")
    if sep and _NAME.match(name) and uri:
        return name, uri
    return None, text


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``serve`` and ``edge-export`` to the texinspect CLI."""
    _add_serve(subparsers)
    export = subparsers.add_parser(
        "edge-export",
        help="export FMR-Net's edge half (encoder + memory bank) as TorchScript",
        description="Write the edge half of an FMR-Net model: one TorchScript file for the edge device.",
    )
    export.add_argument("--model", required=True, help="FMR-Net model folder (or any URI `serve` accepts)")
    export.add_argument("--out", required=True, help="output file, e.g. edge.pt")
    export.set_defaults(func=_cmd_edge_export)


def _add_serve(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="serve models over HTTP with KServe (V1 and V2 protocols)",
        description="Serve one or more texinspect models with kserve's ModelServer (REST V1 + V2).",
    )
    serve.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="[NAME=]URI",
        help="model folder, file://, models:/NAME@ALIAS, runs:/ID/PATH or s3://BUCKET/PREFIX; "
        "NAME is the name in the URL (default: the model's family). Repeatable.",
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 in a pod)"
    )
    serve.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080, KServe's)")
    serve.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:0")
    serve.add_argument(
        "--max-batch",
        type=int,
        default=1,
        help="merge concurrent requests into forward passes of up to this many images "
        "(default 1: no merging; measured in docs/serving.md)",
    )
    serve.add_argument(
        "--batch-wait-ms",
        type=float,
        default=0.0,
        help="with --max-batch > 1: wait this long for more requests",
    )
    serve.add_argument("--max-images", type=int, default=64, help="images per request (default 64)")
    serve.add_argument(
        "--max-image-mb", type=float, default=16.0, help="size of one encoded image (default 16 MB)"
    )
    serve.add_argument(
        "--max-pixels", type=int, default=36_000_000, help="pixels of one decoded image (default 36 M)"
    )
    serve.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch CPU threads (0: torch's default, all cores of the host; set it to the pod's CPU limit)",
    )
    serve.add_argument(
        "--cache-dir", default=None, help="where remote models are downloaded (default: a temp dir)"
    )
    serve.add_argument(
        "--tracking-uri", default=None, help="MLflow tracking URI for models:/ (default: MLFLOW_TRACKING_URI)"
    )
    serve.add_argument("--family", action="append", default=[], metavar="NAME=MODULE", help="register an extra model family (plugin)")
    serve.set_defaults(func=_cmd_serve)


def _register_families(specs: Sequence[str]) -> None:
    from texinspect.models import register

    for spec in specs:
        name, sep, module = spec.partition("=")
        if not sep or not name or not module:
            raise ConfigError(f"--family '{spec}': expected NAME=MODULE (e.g. mymodel=mypackage.family)")
        register(name, module)


def _cmd_serve(args: argparse.Namespace) -> int:
    import torch

    from texinspect.models.artifact import load_card
    from texinspect.serving.model_uri import resolve_model_uri
    from texinspect.serving.predictor import BatchingConfig, TexinspectModel
    from texinspect.serving.protocol import Limits
    from texinspect.serving.server import serve

    _register_families(args.family)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    for flag, value in (
        ("--max-batch", args.max_batch),
        ("--max-images", args.max_images),
        ("--max-pixels", args.max_pixels),
    ):
        if value < 1:
            raise ConfigError(f"{flag} must be at least 1, got {value}")
    limits = Limits(
        max_images=args.max_images,
        max_image_bytes=int(args.max_image_mb * 1024 * 1024),
        max_pixels=args.max_pixels,
    )
    batching = BatchingConfig(
        enabled=args.max_batch > 1, max_batch=args.max_batch, max_wait_ms=args.batch_wait_ms
    )
    models = []
    for spec in args.model:
        name, uri = split_model_arg(spec)
        local = resolve_model_uri(uri, args.cache_dir, args.tracking_uri)
        name = name or load_card(local).family
        if any(m.name == name for m in models):
            raise ConfigError(f"--model: two models are named '{name}'; name them with NAME=URI")
        model = TexinspectModel(name, local, device=args.device, limits=limits, batching=batching)
        model.load()
        models.append(model)
    serve(models, host=args.host, port=args.port)
    return 0


def _cmd_edge_export(args: argparse.Namespace) -> int:
    from texinspect.serving.edge import export_edge
    from texinspect.serving.model_uri import resolve_model_uri

    out = export_edge(resolve_model_uri(args.model), args.out)
    print(f"edge artifact written to {out}")
    return 0

