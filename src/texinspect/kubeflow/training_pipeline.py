"""The training pipeline: config -> synthesis -> phase 1 -> memory bank -> phase 2 -> evaluate
-> register -> deploy (only if the quality gate promoted the model).

Built by :func:`build_pipeline` so that the image, the GPU request and the names of the cluster
objects are compile-time settings (:class:`ClusterSettings`), while the model family and every
hyper-parameter are run-time pipeline parameters. The same pipeline object runs on a Kubeflow
cluster (compiled YAML) and on one machine with ``kfp.local`` (:mod:`texinspect.kubeflow.local`),
which ignores the Kubernetes settings.
"""

# No ``from __future__ import annotations``: KFP reads the pipeline signature's annotations.

from kfp import dsl, kubernetes
from kfp.dsl.graph_component import GraphComponent

from texinspect.kubeflow.components import build_components
from texinspect.kubeflow.credentials import apply_env
from texinspect.kubeflow.settings import DEFAULT_IMAGE, MODEL_STORE_MOUNT, PIPELINE_NAME, ClusterSettings

__all__ = ["DEFAULT_IMAGE", "PIPELINE_NAME", "ClusterSettings", "build_pipeline"]

# Requests/limits per stage: (cpu request, memory request, cpu limit, memory limit).
RESOURCES: dict[str, tuple[str, str, str, str]] = {
    "dataset-fingerprint": ("250m", "512Mi", "1", "1Gi"),
    "resolve-config": ("100m", "256Mi", "500m", "1Gi"),
    "synthesize-defects": ("1", "2Gi", "2", "4Gi"),
    "train-phase1": ("4", "16Gi", "8", "32Gi"),
    "build-memory-bank": ("2", "8Gi", "4", "16Gi"),
    "train-phase2": ("4", "16Gi", "8", "32Gi"),
    "evaluate-model": ("2", "8Gi", "4", "16Gi"),
    "register-model": ("500m", "1Gi", "1", "2Gi"),
    "deploy-model": ("250m", "512Mi", "1", "1Gi"),
}
TRAINING_STAGES = ("train-phase1", "train-phase2")


def configure_task(task: dsl.PipelineTask, stage: str, settings: ClusterSettings) -> dsl.PipelineTask:
    """Kubernetes settings of one task (ignored by kfp.local): resources, GPU, security, and the
    ConfigMap/Secret env the stage reads (:mod:`texinspect.kubeflow.credentials`)."""
    cpu_req, mem_req, cpu_lim, mem_lim = RESOURCES[stage]
    task.set_display_name(stage)
    task.set_cpu_request(cpu_req).set_memory_request(mem_req).set_cpu_limit(cpu_lim).set_memory_limit(mem_lim)
    if stage in TRAINING_STAGES and settings.gpus > 0:
        task.set_accelerator_type(settings.gpu_resource).set_accelerator_limit(settings.gpus)
        kubernetes.add_toleration(task, key=settings.gpu_resource, operator="Exists", effect="NoSchedule")
    if stage in TRAINING_STAGES:  # DDP/NCCL and DataLoader workers need more than the default 64 MiB
        kubernetes.empty_dir_mount(
            task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit="2Gi"
        )
    kubernetes.set_security_context(
        task, run_as_user=settings.run_as_user, run_as_group=settings.run_as_user, run_as_non_root=True
    )
    apply_env(task, stage, settings)
    return task


def ranks_per_pod(settings: ClusterSettings) -> int:
    """DDP processes of one training task: one per GPU the pod gets, fixed when compiling.

    Not a run-time parameter: the GPU request is compiled into the YAML, so a run-time
    ``world_size`` above it would put several NCCL ranks on one GPU. Ranks across pods are a
    Kubeflow Trainer ``TrainJob`` (``k8s/training/``), not a pipeline task.
    """
    return max(1, settings.gpus)


def build_pipeline(settings: ClusterSettings | None = None) -> GraphComponent:
    """The training pipeline for ``settings`` (defaults: the CUDA image, one GPU per phase)."""
    settings = settings or ClusterSettings()
    c = build_components(settings.image)
    world_size = ranks_per_pod(settings)

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description=(
            "texinspect: train RB-AE or FMR-Net on defect-free images, evaluate, register in MLflow "
            "behind the champion gate, and deploy to KServe when promoted. Negative typed parameters "
            "keep the value from params.yaml and the profile; `overrides` is a JSON object of any "
            'params.yaml keys, e.g. {"fmrnet.memory_size": 256}.'
        ),
    )
    def texinspect_training(
        data_uri: str,
        model: str = "rbae",
        profile: str = "",
        overrides: str = "",
        params_file: str = "",
        seed: int = -1,
        image_size: int = -1,
        batch_size: int = -1,
        phase1_epochs: int = -1,
        phase2_epochs: int = -1,
        max_steps_phase1: int = -1,
        max_steps_phase2: int = -1,
        max_minutes: float = -1.0,
        lr: float = -1.0,
        k_sigma: float = -1.0,
        service_name: str = "texinspect",
        namespace: str = "",
        deploy_variant: str = "cpu",
        model_store: str = MODEL_STORE_MOUNT,
        apply_deployment: bool = True,
    ) -> None:
        data = dsl.importer(artifact_uri=data_uri, artifact_class=dsl.Dataset, reimport=False)
        data.set_display_name("dataset")
        # KFP keys an imported artifact by its URI: the content hash (never cached) goes into
        # resolve-config, whose config every later stage takes, so new data behind the same URI
        # retrains and the same data is cached.
        fingerprint = configure_task(c["dataset-fingerprint"](data=data.output), "dataset-fingerprint", settings)
        fingerprint.set_caching_options(False)

        cfg = c["resolve-config"](
            data_hash=fingerprint.output,
            model=model,
            profile=profile,
            overrides=overrides,
            params_file=params_file,
            seed=seed,
            image_size=image_size,
            batch_size=batch_size,
            phase1_epochs=phase1_epochs,
            phase2_epochs=phase2_epochs,
            max_steps_phase1=max_steps_phase1,
            max_steps_phase2=max_steps_phase2,
            max_minutes=max_minutes,
            lr=lr,
            k_sigma=k_sigma,
        )
        configure_task(cfg, "resolve-config", settings)
        config = cfg.outputs["config"]

        synth = configure_task(
            c["synthesize-defects"](config=config, data=data.output), "synthesize-defects", settings
        )

        phase1 = c["train-phase1"](config=config, data=data.output, world_size=world_size)
        configure_task(phase1, "train-phase1", settings).after(synth)

        bank = c["build-memory-bank"](
            config=config, data=data.output, checkpoints=phase1.outputs["checkpoints"]
        )
        configure_task(bank, "build-memory-bank", settings)

        phase2 = c["train-phase2"](
            config=config, data=data.output, bank=bank.outputs["bank"], world_size=world_size
        )
        configure_task(phase2, "train-phase2", settings)

        evaluation = c["evaluate-model"](config=config, data=data.output, model=phase2.outputs["model"])
        configure_task(evaluation, "evaluate-model", settings)

        registration = c["register-model"](
            config=config,
            run=phase2.outputs["run"],
            model=phase2.outputs["model"],
            evaluation=evaluation.outputs["evaluation"],
        )
        configure_task(registration, "register-model", settings)
        registration.set_caching_options(False)

        with dsl.If(registration.outputs["Output"] == True, name="promoted"):  # noqa: E712 (KFP condition)
            deployment = c["deploy-model"](
                config=config,
                model=phase2.outputs["model"],
                registration=registration.outputs["registration"],
                service_name=service_name,
                namespace=namespace,
                model_store=model_store,
                model_pvc=settings.model_pvc,
                variant=deploy_variant,
                apply=apply_deployment,
            )
            configure_task(deployment, "deploy-model", settings)
            deployment.set_caching_options(False)
            kubernetes.mount_pvc(deployment, pvc_name=settings.model_pvc, mount_path=MODEL_STORE_MOUNT)

    return texinspect_training
