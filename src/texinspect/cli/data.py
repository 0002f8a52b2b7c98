"""``texinspect data check | sample | push | pull``: argument parsing only.

The logic lives in :mod:`texinspect.data.check`, :mod:`texinspect.data.sample` and
:mod:`texinspect.data.transfer`; this module only parses, calls them and prints.
"""

from __future__ import annotations

import argparse
import sys

from texinspect.data.check import check_dataset
from texinspect.data.sample import DEFECT_TYPES, TEXTURES, make_sample_dataset
from texinspect.errors import DataError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``data`` command (with ``check`` and ``sample``) to a parent parser's subparsers."""
    data = subparsers.add_parser(
        "data", help="check a dataset folder, write the sample dataset, push to / pull from S3"
    )
    commands = data.add_subparsers(dest="data_command", metavar="{check,sample,push,pull}")
    commands.required = True

    check = commands.add_parser(
        "check",
        help="open every image and mask of an MVTec-layout dataset and list problems (exit 1 if any)",
    )
    check.add_argument(
        "dir", metavar="DIR", help="dataset root (train/good, test/<type>, optional ground_truth/<type>)"
    )
    check.add_argument(
        "--size", type=int, default=None, help="training image size: warn about smaller images"
    )
    check.add_argument("--strict", action="store_true", help="stop at the first problem")
    check.add_argument(
        "--max-problems", type=int, default=30, help="problems listed in the summary (default 30)"
    )
    check.set_defaults(func=run_check)

    sample = commands.add_parser("sample", help="write the seeded procedural sample dataset (MVTec layout)")
    sample.add_argument("dir", metavar="DIR", help="output folder (must be empty unless --overwrite)")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    sample.add_argument("--texture", choices=TEXTURES, default="granular", help="surface family")
    sample.add_argument("--channels", type=int, choices=(1, 3), default=3)
    sample.add_argument("--n-train", type=int, default=40, help="defect-free training images")
    sample.add_argument("--n-test-good", type=int, default=8, help="defect-free test images")
    sample.add_argument("--n-test-defect", type=int, default=6, help="test images per defect type")
    sample.add_argument(
        "--defect-types",
        default=",".join(DEFECT_TYPES),
        help=f"comma-separated subset of {','.join(DEFECT_TYPES)}",
    )
    sample.add_argument("--overwrite", action="store_true", help="replace a sample dataset already in DIR")
    sample.set_defaults(func=run_sample)

    push = commands.add_parser(
        "push",
        help="upload a dataset folder to s3://bucket/prefix (what the pipeline's data_uri imports)",
        description="Upload DIR so the prefix holds exactly DIR (objects DIR lacks are removed), then "
        "write .texinspect-dataset.json with the content hash. Endpoint and credentials: "
        "AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY.",
    )
    push.add_argument("dir", metavar="DIR", help="dataset root (MVTec layout)")
    push.add_argument("uri", metavar="S3_URI", help="s3://bucket/prefix")
    push.add_argument("--no-check", action="store_true", help="skip `data check` before uploading")
    push.set_defaults(func=run_push)

    pull = commands.add_parser("pull", help="download s3://bucket/prefix into a folder, checking its hash")
    pull.add_argument("uri", metavar="S3_URI", help="s3://bucket/prefix")
    pull.add_argument("dir", metavar="DIR", help="destination folder (must not exist unless --overwrite)")
    pull.add_argument("--overwrite", action="store_true", help="replace DIR")
    pull.set_defaults(func=run_pull)


def run_check(args: argparse.Namespace) -> int:
    """Print the check summary; 1 when there are problems, 0 when the dataset is clean."""
    try:
        report = check_dataset(args.dir, size=args.size, strict=args.strict)
    except DataError as exc:  # --strict: the first problem, one line
        print(f"problem: {exc}", file=sys.stderr)
        return 1
    print(report.summary(max_problems=args.max_problems))
    return 0 if report.ok else 1


def run_sample(args: argparse.Namespace) -> int:
    """Write the sample dataset and print its counts."""
    defect_types = [t.strip() for t in args.defect_types.split(",") if t.strip()]
    index = make_sample_dataset(
        args.dir,
        n_train=args.n_train,
        n_test_good=args.n_test_good,
        n_test_defect_per_type=args.n_test_defect,
        size=args.size,
        seed=args.seed,
        channels=args.channels,
        texture=args.texture,
        defect_types=defect_types,
        overwrite=args.overwrite,
    )
    counts = ", ".join(f"{key} {n}" for key, n in index.counts().items())
    print(f"wrote {len(index)} images to {index.root} ({args.texture}, seed {args.seed}): {counts}")
    return 0


def run_push(args: argparse.Namespace) -> int:
    from texinspect.data.transfer import push

    result = push(args.dir, args.uri, check=not args.no_check)
    print(f"pushed {result.files} files to {result.uri} ({result.removed} stale removed); {result.content_hash}")
    return 0


def run_pull(args: argparse.Namespace) -> int:
    from texinspect.data.transfer import pull

    folder, digest = pull(args.uri, args.dir, overwrite=args.overwrite)
    print(f"pulled {args.uri} to {folder}; {digest}")
    return 0

