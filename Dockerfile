# syntax=docker/dockerfile:1.7
# One image per accelerator for every Kubeflow component, the KServe predictor and the MLflow
# server; each carries the pipeline YAML compiled for it (texinspect pipeline compile).
#
#   CPU (default):  docker build -t ghcr.io/texinspect/texinspect:0.1.0 .
#   CUDA:           docker build --build-arg TORCH_FLAVOR=cuda -t ghcr.io/texinspect/texinspect:0.1.0-cuda .
#
# The CUDA flavor installs PyPI's CUDA build of torch, which brings its own CUDA runtime
# libraries (nvidia-* wheels); the GPU node's driver is all the host must provide. A different
# base (e.g. an internal mirror of python:3.11-slim) is one more build arg: BASE_IMAGE.
# Nothing secret is baked in: MLflow, S3 and database credentials come from Kubernetes Secrets
# as environment variables at run time (docs/kubeflow.md).

ARG BASE_IMAGE=python:3.11-slim-bookworm

# --------------------------------------------------------------------------- build stage
FROM ${BASE_IMAGE} AS build
ARG TORCH_FLAVOR=cpu
ARG TORCH_VERSION=2.13.0
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src
# torch first, from the index of the chosen flavor; then the package with the project's pins
# (minus the torch pin, which names the CPU build), with every extra a pipeline component imports
# (hpo: the sweep pipeline's tasks run optuna; a test derives the list from the imports).
# psycopg2 lets the same image run the MLflow server against Postgres (k8s/base/mlflow.yaml).
RUN case "${TORCH_FLAVOR}" in \
      cpu)  pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_CPU_INDEX}" ;; \
      cuda) pip install "torch==${TORCH_VERSION}" ;; \
      *)    echo "TORCH_FLAVOR must be cpu or cuda, got ${TORCH_FLAVOR}" >&2; exit 1 ;; \
    esac \
 && grep -v '^torch==' constraints.txt > /tmp/constraints.txt \
 && pip install -c /tmp/constraints.txt ".[serve,tracking,data,pipelines,hpo]" "psycopg2-binary==2.9.13" \
 && python -c "import texinspect, torch, kfp, kserve, mlflow, optuna; print('texinspect', texinspect.__version__, 'torch', torch.__version__)"

# --------------------------------------------------------------------------- runtime stage
FROM ${BASE_IMAGE} AS runtime
ARG TORCH_FLAVOR=cpu
LABEL org.opencontainers.image.title="texinspect" \
      org.opencontainers.image.description="Unsupervised surface defect detection (RB-AE, FMR-Net): pipeline components, KServe predictor, MLflow server" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.texinspect.torch-flavor="${TORCH_FLAVOR}"

# A fixed non-root user; the Kubernetes manifests run as the same uid/gid (1000).
RUN groupadd --system --gid 1000 texinspect \
 && useradd --system --uid 1000 --gid 1000 --home-dir /home/texinspect --create-home --shell /usr/sbin/nologin texinspect

COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# Read-only at run time: the default params and the pipelines compiled for this image's flavor
# (pipelines/cpu/ or pipelines/cuda/: GPU requests only with the CUDA build), which the
# scheduling Job submits from /app/pipelines/.
COPY params.yaml ./params.yaml
COPY pipelines/${TORCH_FLAVOR}/ ./pipelines/

# Caches go to /tmp so the root filesystem can be mounted read-only (with an emptyDir at /tmp).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/texinspect \
    TEXINSPECT_PARAMS=/app/params.yaml \
    MPLCONFIGDIR=/tmp/matplotlib \
    TORCH_HOME=/tmp/torch

USER 1000:1000
EXPOSE 8080
ENTRYPOINT ["texinspect"]
CMD ["--help"]
