"""``texinspect export --model DIR --out DIR --format onnx``: argument parsing only."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export",
        help="export a model for another runtime (ONNX: model.onnx, FMR-Net's edge.onnx)",
        description="Write MODEL as ONNX (model.onnx: images -> anomaly map; for FMR-Net also edge.onnx, "
        "the encoder + memory bank half of the edge-cloud split) and check it with ONNX Runtime "
        "against PyTorch; fails when they differ beyond the stated tolerance.",
    )
    parser.add_argument("--model", required=True, help="model folder (or any URI `serve` accepts)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--format", choices=["onnx"], default="onnx", help="target format (default: onnx)")
    parser.add_argument("--no-edge", action="store_true", help="FMR-Net: skip edge.onnx")
    parser.set_defaults(func=_cmd_export)
    return parser


def _cmd_export(args: argparse.Namespace) -> int:
    from texinspect.export.onnx_export import export_onnx
    from texinspect.serving.model_uri import resolve_model_uri

    meta = export_onnx(resolve_model_uri(args.model), args.out, edge=not args.no_edge)
    for name, info in meta["files"].items():
        worst = max(info["max_abs_diff"].values())
        print(f"{args.out}/{name}: {', '.join(info['outputs'])} (max |onnx - torch| {worst:.2e})")
    return 0
