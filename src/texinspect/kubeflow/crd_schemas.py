"""Validate custom resources (KServe, Kubeflow Trainer) against the CRD schemas the operators ship.

The schemas are the ``openAPIV3Schema`` of each CRD version, vendored under ``crds/`` as gzipped
JSON (sources and commits in ``crds/SOURCES.md``; regenerate with ``python -m
texinspect.kubeflow.crd_schemas CRD.yaml...``). Validation uses ``jsonschema`` (what
``kubernetes-validate`` uses for the built-in kinds) in the same strict mode: a field the CRD does
not declare is an error, where the API server would silently prune it (``minReplica`` for
``minReplicas`` would deploy a predictor without the bound). Built-in kinds go to
``kubernetes-validate``; :func:`validate_manifest` picks the right one.
"""

from __future__ import annotations

import copy
import gzip
import json
import sys
from functools import cache
from pathlib import Path
from typing import Any

from texinspect.errors import ConfigError

CRD_DIR = Path(__file__).with_name("crds")
K8S_VERSION = "1.32.0"  # built-in kinds: the oldest Kubernetes the manifests target


def schema_file(api_version: str, kind: str) -> Path:
    group, _, version = api_version.rpartition("/")
    return CRD_DIR / f"{group}_{kind.lower()}_{version}.json.gz"


def known_kinds() -> list[str]:
    return sorted(p.name.removesuffix(".json.gz") for p in CRD_DIR.glob("*.json.gz"))


def _strict(schema: Any) -> Any:
    """The CRD schema as strict JSON Schema: undeclared fields rejected, ``nullable`` honoured."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if out.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if out.get("x-kubernetes-int-or-string") and "anyOf" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    return out


@cache
def load_schema(api_version: str, kind: str) -> dict[str, Any]:
    path = schema_file(api_version, kind)
    if not path.is_file():
        raise ConfigError(
            f"no vendored CRD schema for {api_version} {kind} ({path.name}); vendored: {', '.join(known_kinds())}"
        )
    return _strict(json.loads(gzip.decompress(path.read_bytes())))


def _path(error: Any) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(root)"


def validate_custom(manifest: dict[str, Any], where: str = "manifest") -> None:
    """Raise :class:`ConfigError` naming the field unless ``manifest`` fits its CRD's schema."""
    import jsonschema

    api_version, kind = manifest.get("apiVersion", ""), manifest.get("kind", "")
    name = (manifest.get("metadata") or {}).get("name")
    if not name:
        raise ConfigError(f"{where}: metadata.name is required")
    schema = load_schema(api_version, kind)
    body = copy.deepcopy(manifest)
    body.pop("status", None)
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(body), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        raise ConfigError(
            f"{where}: {kind}/{name}: field {_path(first)}: {first.message} "
            f"(CRD schema {schema_file(api_version, kind).name}; {len(errors)} error(s))"
        )


def validate_manifest(manifest: dict[str, Any], where: str = "manifest") -> None:
    """Built-in kinds with ``kubernetes-validate --strict``, custom resources with their CRD."""
    api_version, kind = manifest.get("apiVersion", ""), manifest.get("kind", "")
    if schema_file(api_version, kind).is_file():
        validate_custom(manifest, where)
        return
    from kubernetes_validate.utils import SchemaNotFoundError, ValidationError, validate

    try:
        validate(manifest, K8S_VERSION, strict=True)
    except SchemaNotFoundError as exc:
        raise ConfigError(f"{where}: {api_version} {kind} is neither built in nor a vendored CRD") from exc
    except ValidationError as exc:
        raise ConfigError(f"{where}: {kind}/{manifest['metadata'].get('name')}: {exc}") from exc


def vendor(crd_path: str | Path, out_dir: str | Path = CRD_DIR) -> list[Path]:
    """Write the ``openAPIV3Schema`` of every served version of a CRD file as gzipped JSON."""
    import yaml

    written = []
    crd = yaml.safe_load(Path(crd_path).read_text())
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    for version in crd["spec"]["versions"]:
        if not version.get("served", True):
            continue
        out = Path(out_dir) / f"{group}_{kind.lower()}_{version['name']}.json.gz"
        text = json.dumps(version["schema"]["openAPIV3Schema"], sort_keys=True, separators=(",", ":"))
        out.write_bytes(gzip.compress(text.encode(), mtime=0))
        written.append(out)
    return written


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        for path in vendor(arg):
            print(path)
