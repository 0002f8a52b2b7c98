"""``texinspect synthesize``: argument parsing only; the work is ``stage.synthesize``."""

from __future__ import annotations

import argparse

from texinspect.cli.common import add_config_args, config_from_args, set_data_root


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``synthesize`` on the main CLI's subparsers; the handler is ``args.func``."""
    parser = subparsers.add_parser(
        "synthesize",
        help="write a seeded set of artificial defects (images, masks, sources, manifest, preview)",
        description=(
            "Draw synthesis.count artificial defects on the training images of data.root and write "
            "OUT/images, OUT/masks, OUT/sources, OUT/manifest.csv and OUT/preview.png. "
            "Look at preview.png before training."
        ),
    )
    add_config_args(parser)
    parser.add_argument(
        "--out", default="artifacts/synthesis", help="output folder (default: artifacts/synthesis)"
    )
    parser.add_argument("--data", default=None, help="dataset root in MVTec layout (overrides data.root)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Load the config, run the stage, print where the preview is; 0 on success.

    Errors (``TexinspectError``: bad config key, missing dataset) propagate to the main CLI, which
    prints ``error: <message>`` and exits 2.
    """
    from texinspect.synthesis.stage import synthesize  # heavy imports only when the command runs

    config = config_from_args(args)
    set_data_root(config, args.data)
    out = synthesize(config, args.out)
    print(f"wrote {config.synthesis.count} synthetic defects to {out}; look at {out / 'preview.png'}")
    return 0
