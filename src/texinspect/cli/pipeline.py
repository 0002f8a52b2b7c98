"""``texinspect pipeline compile | run | schedule``: argument parsing only.

compile   write pipelines/{cpu,cuda}/texinspect-{training,sweep}.yaml and components/<stage>.yaml
          (``--check``: fail if the checked-in files differ from the code)
run       ``--local``: every stage on this machine with kfp.local; ``--host URL``: one run on a cluster;
          ``--sweep``: the Optuna sweep pipeline (parallel workers, then retrain the best) instead
schedule  create (or replace) the recurring retraining run on a cluster
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from texinspect.config import parse_override
from texinspect.errors import ConfigError


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``pipeline`` (with compile, run, schedule) on the main CLI's subparsers."""
    parser = subparsers.add_parser(
        "pipeline", help="Kubeflow pipeline: compile, run (locally or on a cluster), schedule"
    )
    commands = parser.add_subparsers(dest="pipeline_command", metavar="{compile,run,schedule}")
    commands.required = True

    comp = commands.add_parser("compile", help="write the pipeline YAML and one YAML per component")
    comp.add_argument(
        "--pipelines-dir", default="pipelines", help="where the pipeline YAML goes (default: pipelines)"
    )
    comp.add_argument(
        "--components-dir", default="components", help="where component YAMLs go (default: components)"
    )
    _add_cluster_args(comp)
    comp.add_argument(
        "--sweep-workers", type=int, default=4, help="parallel trial workers of the sweep pipeline (default: 4)"
    )
    comp.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if the checked-in YAML is stale"
    )
    comp.set_defaults(func=_cmd_compile)

    run = commands.add_parser("run", help="run the training pipeline once: --local, or on --host")
    where = run.add_mutually_exclusive_group(required=True)
    where.add_argument("--local", action="store_true", help="every stage on this machine (kfp.local)")
    where.add_argument("--host", help="Kubeflow Pipelines API endpoint, e.g. http://localhost:8080")
    run.add_argument("--out", default="runs/pipeline", help="--local: output folder (default: runs/pipeline)")
    _add_sweep_args(run)
    _add_pipeline_args(run)
    _add_remote_args(run)
    run.set_defaults(func=_cmd_run)

    sched = commands.add_parser(
        "schedule", help="create or replace the recurring retraining run on a cluster"
    )
    sched.add_argument("--host", required=True, help="Kubeflow Pipelines API endpoint")
    sched.add_argument(
        "--cron", default=None, help="6-field cron, seconds first (default: '0 0 3 * * 0', Sundays 03:00)"
    )
    sched.add_argument("--name", default=None, help="recurring run name (default: texinspect-retrain)")
    sched.add_argument(
        "--keep-existing", action="store_true", help="do not replace a recurring run of the same name"
    )
    _add_pipeline_args(sched)
    _add_remote_args(sched)
    sched.set_defaults(func=_cmd_schedule)
    return parser


def _add_cluster_args(parser: argparse.ArgumentParser) -> None:
    from texinspect.kubeflow.settings import ClusterSettings

    d = ClusterSettings()
    parser.add_argument(
        "--gpus",
        type=int,
        default=None,
        help="GPUs per training task = DDP ranks per pod; 0: CPU-only. Default: both flavors "
        "(pipelines/cpu/ with 0, pipelines/cuda/ with 1)",
    )
    parser.add_argument(
        "--image",
        default=None,
        help="project image for every component (default: the CPU image for --gpus 0, the CUDA image otherwise)",
    )
    parser.add_argument(
        "--gpu-resource", default=d.gpu_resource, help=f"accelerator resource (default: {d.gpu_resource})"
    )


def _add_sweep_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sweep", action="store_true", help="the sweep pipeline (trials: --param trials=N) instead of training"
    )
    parser.add_argument("--workers", type=int, default=2, help="--sweep --local: parallel workers (default: 2)")
    parser.add_argument(
        "--storage",
        default="",
        help="--sweep --local: Optuna storage URL (default: a SQLite file in --out; never a pipeline parameter)",
    )


def _add_pipeline_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        required=True,
        help="dataset: a local folder (--local) or a URI the cluster reads (s3://...)",
    )
    parser.add_argument("--model", default=None, help="model family: rbae | fmrnet | aessim (default: params.yaml)")
    parser.add_argument(
        "--profile", default=None, help="named override set from params.yaml (e.g. smoke, cpu)"
    )
    parser.add_argument(
        "--config", default=None, help="params file; default: ./params.yaml locally, the image's on a cluster"
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a params.yaml key (repeatable)")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any other pipeline parameter, e.g. --param world_size=2 --param deploy_variant=gpu (repeatable)",
    )


def _add_remote_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--package", default=None, help="compiled pipeline YAML (default: pipelines/<flavor>/texinspect-training.yaml)"
    )
    parser.add_argument(
        "--flavor",
        choices=["cpu", "cuda"],
        default="cuda",
        help="without --package: the CPU or the GPU (CUDA) pipeline (default: cuda)",
    )
    parser.add_argument("--experiment", default="texinspect", help="KFP experiment (default: texinspect)")
    parser.add_argument("--namespace", default=None, help="KFP namespace (multi-user installs)")
    parser.add_argument(
        "--service-account", default=None, help="Kubernetes service account of the run's pods"
    )


def pipeline_params(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pipeline parameters, params.yaml overrides) from the command line."""
    from texinspect.kubeflow.sweep_pipeline import build_sweep_pipeline
    from texinspect.kubeflow.training_pipeline import build_pipeline

    pipeline = build_sweep_pipeline() if getattr(args, "sweep", False) else build_pipeline()
    known = set(pipeline.component_spec.inputs or {})
    params: dict[str, Any] = {"data_uri": str(args.data)}
    if args.model:
        params["model"] = args.model
    if args.profile:
        params["profile"] = args.profile
    if args.config:
        params["params_file"] = str(args.config)
    for text in args.param:
        key, value = parse_override(text)
        if key not in known:
            hint = (
                " (ranks per pod equal the GPUs per pod, fixed when compiling: "
                "`texinspect pipeline compile --gpus N`)"
                if key == "world_size"
                else ""
            )
            raise ConfigError(
                f"--param {text}: '{key}' is not a pipeline parameter{hint} (known: {', '.join(sorted(known))})"
            )
        params[key] = value
    overrides = dict(parse_override(text) for text in args.set)
    return params, overrides


def _package(args: argparse.Namespace) -> Path:
    from texinspect.kubeflow import sweep_pipeline
    from texinspect.kubeflow.build import PIPELINE_FILE

    if args.package:
        return Path(args.package)
    name = sweep_pipeline.PIPELINE_FILE if getattr(args, "sweep", False) else PIPELINE_FILE
    return Path("pipelines") / args.flavor / name


def _cmd_compile(args: argparse.Namespace) -> int:
    from texinspect.kubeflow.build import compile_all, stale_files
    from texinspect.kubeflow.settings import ClusterSettings

    settings = None  # both flavors
    if args.gpus is not None or args.image:
        gpus = 1 if args.gpus is None else args.gpus
        settings = ClusterSettings(image=args.image or "", gpus=gpus, gpu_resource=args.gpu_resource)
    if args.check:
        problems = stale_files(args.pipelines_dir, args.components_dir, settings, args.sweep_workers)
        for problem in problems:
            print(problem)
        print("compiled YAML is up to date" if not problems else f"{len(problems)} stale file(s)")
        return 1 if problems else 0
    for path in compile_all(args.pipelines_dir, args.components_dir, settings, args.sweep_workers):
        print(f"wrote {path}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    params, overrides = pipeline_params(args)
    if args.local:
        from texinspect.kubeflow.local import run_local, summary
        from texinspect.kubeflow.sweep_pipeline import run_local_sweep

        if "params_file" not in params and Path("params.yaml").is_file():
            params["params_file"] = "params.yaml"
        if args.sweep:
            params.pop("data_uri")
            result = run_local_sweep(Path(args.data), Path(args.out), args.storage, params, overrides, args.workers)
        else:
            result = run_local(args.data, args.out, params, overrides)
        print(summary(result))
        return 0
    from texinspect.kubeflow.schedule import make_client, submit_run

    params["overrides"] = json.dumps(overrides) if overrides else ""
    run_id = submit_run(
        make_client(args.host, args.namespace),
        _package(args),
        params,
        experiment=args.experiment,
        namespace=args.namespace,
        service_account=args.service_account,
    )
    print(f"submitted run {run_id}")
    return 0


def _cmd_schedule(args: argparse.Namespace) -> int:
    from texinspect.kubeflow.schedule import DEFAULT_CRON, DEFAULT_NAME, create_recurring_run, make_client

    params, overrides = pipeline_params(args)
    if overrides:
        params["overrides"] = json.dumps(overrides)
    run_id = create_recurring_run(
        make_client(args.host, args.namespace),
        _package(args),
        params,
        name=args.name or DEFAULT_NAME,
        experiment=args.experiment,
        cron=args.cron or DEFAULT_CRON,
        namespace=args.namespace,
        service_account=args.service_account,
        replace=not args.keep_existing,
    )
    print(f"recurring run {args.name or DEFAULT_NAME} ({run_id}) scheduled: {args.cron or DEFAULT_CRON}")
    return 0
