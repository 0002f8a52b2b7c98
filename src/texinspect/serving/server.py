"""Run kserve's ModelServer (REST, V1 + V2 protocols) on a chosen host and port.

``kserve.ModelServer.start`` binds 0.0.0.0 with no way to change it, and starts a gRPC server on
[::]. Locally and in tests the server must listen on 127.0.0.1 only; in an InferenceService pod it
must listen on 0.0.0.0. So this module builds the same pieces ``ModelServer.start`` builds (the
ModelServer's data plane and model repository, kserve's REST application with its V1/V2 routes and
error handlers) and runs them with the host set; gRPC is not started.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from texinspect.serving.kserve_import import import_kserve

log = logging.getLogger(__name__)


def _strict_dataplane_class() -> type:
    """kserve's DataPlane, except that a body it cannot decode is the client's error (400), not 500.

    kserve 0.21 lets a few decoding failures of the V2 binary extension escape as ValueError or
    InferenceError (a binary part shorter than its shape, raw non-UTF-8 bytes in a BYTES tensor, a
    header without "inputs"), which its handlers answer with 500. Only ``decode`` is wrapped, so
    errors inside the model keep their own status.
    """
    import struct

    from kserve.errors import InferenceError, InvalidInput
    from kserve.protocol.dataplane import DataPlane

    class StrictDecodeDataPlane(DataPlane):
        def decode(self, body: Any, headers: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return super().decode(body, headers, *args, **kwargs)
            except InvalidInput:
                raise
            except InferenceError as exc:
                if "UTF-8" in str(exc):
                    raise InvalidInput(
                        "request body: a BYTES tensor in the binary part is not UTF-8 text; "
                        "send each image base64-encoded"
                    ) from None
                raise InvalidInput(f"request body could not be decoded: {exc}") from None
            except KeyError as exc:
                raise InvalidInput(f"request body: the JSON header misses the key {exc}") from None
            except (ValueError, TypeError, struct.error) as exc:
                raise InvalidInput(f"request body could not be decoded: {exc}") from None

    return StrictDecodeDataPlane


def serve(
    models: Sequence[Any],
    host: str = "127.0.0.1",
    port: int = 8080,
    grace_period: int = 10,
    latency_logging: bool = False,
) -> None:
    """Load (if needed) and register ``models`` (kserve Models), then serve until SIGINT/SIGTERM."""
    kserve = import_kserve()
    from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
    from kserve.protocol.rest.server import RESTServer

    if not models:
        raise ValueError("serve() needs at least one model")
    server = kserve.ModelServer(
        http_port=port,
        enable_grpc=False,
        workers=1,
        enable_latency_logging=latency_logging,
        grace_period=grace_period,
    )
    for model in models:
        if not model.ready:
            model.load()
        server.register_model(model)
        model.enable_latency_logging = latency_logging
    server.dataplane = _strict_dataplane_class()(model_registry=server.registered_models)
    rest = RESTServer(
        FASTAPI_APP_IMPORT_STRING,
        server.dataplane,
        server.model_repository_extension,
        port,
        grace_period=grace_period,
    )
    rest.config.host = host  # the one thing ModelServer.start does not let us choose
    log.info("serving %s on http://%s:%d", ", ".join(m.name for m in models), host, port)
    try:
        asyncio.run(rest.start())
    finally:
        for model in models:
            model.stop()
