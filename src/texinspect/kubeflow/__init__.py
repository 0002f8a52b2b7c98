"""Kubeflow: the training and sweep pipelines, their components (thin calls of ``steps``),
compilation, local runs with kfp.local, scheduling, credentials and the KServe deployment."""
