"""Check a KServe manifest against the kserve SDK's model classes, strictly and offline.

The SDK's ``ApiClient.deserialize`` silently drops keys it does not know, so a typo such as
``minReplica`` would pass unnoticed and the cluster would reject or ignore it. Here every key
must be a field of the SDK class (``attribute_map``), every value must have the field's type
(``openapi_types``), and each object is built with the class's constructor, whose setters
reject missing required fields. Nested Kubernetes types (``V1Container``, ``V1ObjectMeta``)
come from the ``kubernetes`` client the kserve SDK builds on.
"""

from __future__ import annotations

import re
from typing import Any

from texinspect.errors import ConfigError

SCALAR_CHECKS: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "datetime": (str,),
    "date": (str,),
}
ANY_TYPES = {"object", "ResourceQuantity", "IntOrString"}

KINDS = {
    ("serving.kserve.io/v1beta1", "InferenceService"): "V1beta1InferenceService",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "V1alpha1ServingRuntime",
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"): "V1alpha1ClusterServingRuntime",
}


def model_class(name: str) -> type | None:
    """The SDK class called ``name`` (kserve first, then the kubernetes client), or None."""
    import kubernetes.client.models as k8s_models

    from texinspect.serving.kserve_import import import_kserve

    kserve_models = import_kserve().models

    for module in (kserve_models, k8s_models):
        cls = getattr(module, name, None)
        if isinstance(cls, type) and hasattr(cls, "openapi_types"):
            return cls
    return None


def check(value: Any, type_name: str, where: str) -> Any:
    """Validate ``value`` as ``type_name``; returns the SDK object (or plain value)."""
    if value is None:
        return None
    if m := re.fullmatch(r"list\[(.+)\]", type_name):
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        return [check(v, m.group(1), f"{where}[{i}]") for i, v in enumerate(value)]
    if m := re.fullmatch(r"dict\((\w+), (.+)\)", type_name):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return {k: check(v, m.group(2), f"{where}.{k}") for k, v in value.items()}
    if type_name in SCALAR_CHECKS:
        allowed = SCALAR_CHECKS[type_name]
        if isinstance(value, bool) and bool not in allowed or not isinstance(value, allowed):
            raise ConfigError(f"{where}: expected {type_name}, got {value!r}")
        return value
    cls = model_class(type_name)
    if type_name in ANY_TYPES or cls is None:
        return value
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a {type_name} mapping, got {value!r}")
    by_json = {json_key: attr for attr, json_key in cls.attribute_map.items()}
    unknown = sorted(set(value) - set(by_json))
    if unknown:
        raise ConfigError(
            f"{where}: unknown field '{unknown[0]}' for {type_name} (known: {', '.join(sorted(by_json))})"
        )
    kwargs = {
        by_json[key]: check(val, cls.openapi_types[by_json[key]], f"{where}.{key}")
        for key, val in value.items()
    }
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: invalid {type_name}: {exc}") from exc


def validate_kserve(manifest: dict[str, Any], where: str = "manifest") -> Any:
    """Validate one KServe object (InferenceService, ServingRuntime) by its apiVersion/kind."""
    key = (manifest.get("apiVersion"), manifest.get("kind"))
    if key not in KINDS:
        known = ", ".join(f"{k}/{a}" for a, k in KINDS)
        raise ConfigError(f"{where}: not a KServe kind this checker knows: {key} (known: {known})")
    name = (manifest.get("metadata") or {}).get("name")
    if not name:
        raise ConfigError(f"{where}: metadata.name is required")
    return check(manifest, KINDS[key], f"{where}:{key[1]}/{name}")
