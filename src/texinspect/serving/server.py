"""Run kserve's ModelServer (REST, V1 + V2 protocols) on a chosen host and port.

``kserve.ModelServer.start`` binds 0.0.0.0 with no way to change it, and starts a gRPC server on
[::]. Locally and in tests the server must listen on 127.0.0.1 only; in an InferenceService pod it
must listen on 0.0.0.0. So this module builds the same pieces ``ModelServer.start`` builds (the
ModelServer's data plane and model repository, kserve's REST application with its V1/V2 routes)
and runs them with the host set; gRPC is not started. Two pieces are our own: the data plane
(``dataplane.StrictDataPlane``: what is decoded, which errors are 4xx) and the error handlers and
405 routes (``http_errors``: one WARNING line per client error, tracebacks only for 5xx).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from texinspect.serving.kserve_import import import_kserve

log = logging.getLogger(__name__)


def _rest_server_class() -> type:
    """kserve's RESTServer with our 405 routes first and our exception handlers (``http_errors``)."""
    from kserve.protocol.rest.server import RESTServer

    from texinspect.serving.http_errors import (  # deferred: imports kserve
        install_handlers,
        method_not_allowed_router,
    )

    class TexinspectRESTServer(RESTServer):
        def _register_endpoints(self, app: Any) -> None:
            app.include_router(method_not_allowed_router())  # before GET /v1/models/{model_name}
            super()._register_endpoints(app)

        def _add_exception_handlers(self, app: Any) -> None:
            install_handlers(app)

    return TexinspectRESTServer


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

    from texinspect.serving.dataplane import StrictDataPlane  # deferred: imports kserve

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
    server.dataplane = StrictDataPlane(model_registry=server.registered_models)
    rest = _rest_server_class()(
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
