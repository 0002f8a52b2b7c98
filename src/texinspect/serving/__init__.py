"""Serving: a KServe predictor for texinspect models (V1 and V2 protocols) and FMR-Net's edge split.

Modules: ``protocol`` (request parsing, no model), ``encoding`` (base64 / PNG), ``engine`` (the
detector and its inference modes), ``batching`` (server-side batching), ``predictor`` (the
``kserve.Model``), ``model_uri`` (local / MLflow / S3 sources), ``server`` (ModelServer on a chosen
host), ``edge`` (edge-cloud split), ``cli``. Importing this package does not import kserve.
"""
