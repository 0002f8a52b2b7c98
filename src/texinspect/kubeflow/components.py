"""Kubeflow components, one per stage: thin wrappers around the ``texinspect`` stages.

Each function below is the body of a lightweight KFP component. KFP copies its source into the
task, where it runs in the project image (``base_image``), imports ``texinspect`` from it and
installs nothing. The bodies only pass artifact paths to :mod:`texinspect.kubeflow.steps`,
which calls the library functions that the CLI commands people and ``dvc repro`` use wrap.

Artifacts between stages: ``data_hash`` (the dataset's content hash, part of every later cache
key through ``config``), ``config`` (resolved params), ``data`` (the dataset, imported),
``synthetic`` (a seeded sample of artificial defects + preview), ``checkpoints`` (the run
folder after phase 1), ``bank`` (the run folder with the memory bank / RB-AE reference),
``run`` + ``model`` (after phase 2), ``evaluation`` + ``metrics`` + ``report``, ``registration``,
``manifest`` (the InferenceService that was applied).

No ``from __future__ import annotations`` here: KFP reads the annotations at decoration time.
"""

from kfp import dsl
from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output
from kfp.dsl.python_component import PythonComponent


def dataset_fingerprint(data: Input[Dataset]) -> str:
    """The dataset's content hash. Never cached: it feeds resolve-config, so every later stage's
    cache key follows what the data holds, not the URI it was imported from."""
    from texinspect.kubeflow import steps

    return steps.dataset_fingerprint(data.path)


def resolve_config(
    data_hash: str,
    model: str,
    profile: str,
    overrides: str,
    params_file: str,
    seed: int,
    image_size: int,
    batch_size: int,
    phase1_epochs: int,
    phase2_epochs: int,
    max_steps_phase1: int,
    max_steps_phase2: int,
    max_minutes: float,
    lr: float,
    k_sigma: float,
    config: Output[Artifact],
) -> str:
    """params.yaml + profile + overrides + typed parameters -> one config file for every stage."""
    from texinspect.kubeflow import steps

    typed = {
        "seed": seed,
        "image_size": image_size,
        "batch_size": batch_size,
        "phase1_epochs": phase1_epochs,
        "phase2_epochs": phase2_epochs,
        "max_steps_phase1": max_steps_phase1,
        "max_steps_phase2": max_steps_phase2,
        "max_minutes": max_minutes,
        "lr": lr,
        "k_sigma": k_sigma,
    }
    resolved = steps.resolve_config(config.path, model, profile, overrides, params_file, typed)
    config.metadata.update(
        {"model": resolved.model, "profile": profile, "overrides": overrides, "data_hash": data_hash}
    )
    return resolved.model


def synthesize_defects(config: Input[Artifact], data: Input[Dataset], synthetic: Output[Dataset]):
    """Artificial defects (images, masks, manifest, preview.png) from the training images."""
    from texinspect.kubeflow import steps

    steps.synthesize(config.path, data.path, synthetic.path)
    synthetic.metadata["preview"] = "preview.png"


def train_phase1(
    config: Input[Artifact], data: Input[Dataset], world_size: int, checkpoints: Output[Artifact]
):
    """Phase 1 (reconstruction + discriminative encoder); GPU; DDP when world_size > 1."""
    from texinspect.kubeflow import steps

    steps.run_training(config.path, data.path, checkpoints.path, phase="1", world_size=world_size)
    checkpoints.metadata.update({"phase": 1, "world_size": world_size})


def build_memory_bank(
    config: Input[Artifact], data: Input[Dataset], checkpoints: Input[Artifact], bank: Output[Artifact]
):
    """Between the phases: FMR-Net's k-means memory bank, RB-AE's reference image."""
    from texinspect.kubeflow import steps

    steps.copy_tree(checkpoints.path, bank.path)
    bank.metadata.update(steps.between_phases(config.path, data.path, bank.path))


def train_phase2(
    config: Input[Artifact],
    data: Input[Dataset],
    bank: Input[Artifact],
    world_size: int,
    run: Output[Artifact],
    model: Output[Model],
):
    """Phase 2 (defect repair, encoder frozen), threshold calibration, the model artifact; GPU."""
    from texinspect.kubeflow import steps

    steps.copy_tree(bank.path, run.path)
    steps.run_training(config.path, data.path, run.path, phase="2", world_size=world_size)
    steps.copy_tree(steps.model_dir_of(run.path), model.path)
    model.metadata.update(steps.model_metadata(model.path))


def evaluate_model(
    config: Input[Artifact],
    data: Input[Dataset],
    model: Input[Model],
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
    report: Output[Markdown],
):
    """Predict the test split, then measure: metrics.json, per-type table, curves, overlays.

    The image-level ROC curve and the good/defect confusion matrix also go to a KFP
    ClassificationMetrics artifact, which the Kubeflow UI draws; the PR curve (a type KFP does
    not have) stays in ``evaluation/curves/``."""
    from texinspect.kubeflow import steps

    steps.predict(model.path, data.path, evaluation.path)
    steps.evaluate(evaluation.path, data.path, config.path)
    values = steps.scalar_metrics(f"{evaluation.path}/metrics.json")
    for key, value in values.items():
        metrics.log_metric(key, value)
    roc = steps.roc_curve_points(evaluation.path)
    if roc is not None:
        classification.log_roc_curve(roc["fpr"], roc["tpr"], roc["threshold"])
    confusion = steps.confusion_matrix(evaluation.path)
    if confusion is not None:
        classification.log_confusion_matrix(*confusion)
    steps.write_report(evaluation.path, report.path)


def register_model(
    config: Input[Artifact],
    run: Input[Artifact],
    model: Input[Model],
    evaluation: Input[Artifact],
    registration: Output[Artifact],
) -> bool:
    """MLflow: log the run, register the model, promote to champion only if it beats the current one."""
    from texinspect.kubeflow import steps

    decision = steps.register(config.path, run.path, model.path, evaluation.path, registration.path)
    registration.metadata.update(decision)
    return bool(decision["promoted"])


def deploy_model(
    config: Input[Artifact],
    model: Input[Model],
    registration: Input[Artifact],
    service_name: str,
    namespace: str,
    model_store: str,
    model_pvc: str,
    variant: str,
    apply: bool,
    manifest: Output[Artifact],
) -> str:
    """Stage the champion on the model store and create/patch the KServe InferenceService."""
    from texinspect.kubeflow import deploy

    result = deploy.deploy(
        model_dir=model.path,
        version=str(registration.metadata.get("version", "")),
        service_name=service_name,
        namespace=namespace,
        model_store=model_store,
        pvc=model_pvc,
        variant=variant,
        apply=apply,
        manifest_path=manifest.path,
    )
    manifest.metadata.update(result)
    return str(result["storage_uri"])


STAGES = {
    "dataset-fingerprint": dataset_fingerprint,
    "resolve-config": resolve_config,
    "synthesize-defects": synthesize_defects,
    "train-phase1": train_phase1,
    "build-memory-bank": build_memory_bank,
    "train-phase2": train_phase2,
    "evaluate-model": evaluate_model,
    "register-model": register_model,
    "deploy-model": deploy_model,
}


def build_components(image: str) -> dict[str, PythonComponent]:
    """Every stage as a KFP component running in ``image``; installs nothing at run time."""
    return {
        name: dsl.component(fn, base_image=image, install_kfp_package=False) for name, fn in STAGES.items()
    }
