"""kserve's DataPlane, strict about what it decodes and about which errors become a 500.

kserve 0.21, left alone:

- lets a few decoding failures of the V2 binary extension escape as ValueError or InferenceError
  (a binary part shorter than its shape, raw non-UTF-8 bytes in a BYTES tensor, a header without
  "inputs"), which its handlers answer with 500;
- answers a V2 body of any non-JSON content type with a message about a missing
  ``inference-header-content-length`` header instead of naming the content type;
- silently cuts a ``binary_data_size`` larger than the body down to what is there;
- lets an unexpected exception from the model reach Starlette's last-resort handler, which answers
  500 and then closes the keep-alive connection, so the client's next request on it fails.

Here decoding failures are the client's (400), a body that is neither JSON nor the binary extension
is a 415 naming its content type, binary sizes are checked against the body, and any exception
without an HTTP status is wrapped in kserve's ``InferenceError`` (500, answered normally, the
connection kept; the original traceback is logged as its cause).
"""

from __future__ import annotations

import struct
from typing import Any

import orjson

from texinspect.serving.http_errors import HANDLED, UnsupportedMediaType
from texinspect.serving.kserve_import import import_kserve

import_kserve()
from kserve.constants.constants import INFERENCE_CONTENT_LENGTH_HEADER, PredictorProtocol  # noqa: E402
from kserve.errors import InferenceError, InvalidInput  # noqa: E402
from kserve.protocol.dataplane import DataPlane  # noqa: E402


def check_v2_body(body: bytes, headers: dict[str, str]) -> None:
    """A raw (non-JSON) V2 body must be the binary extension, and its parts must fit the body."""
    raw_length = headers.get(INFERENCE_CONTENT_LENGTH_HEADER)
    if raw_length is None:
        content_type = headers.get("content-type", "")
        raise UnsupportedMediaType(
            f"content type '{content_type}' is not supported for V2 inference: send JSON "
            f"('content-type: application/json'), or the binary extension with the "
            f"'{INFERENCE_CONTENT_LENGTH_HEADER}' header"
        )
    try:
        json_length = int(raw_length)
    except ValueError:
        raise InvalidInput(
            f"header '{INFERENCE_CONTENT_LENGTH_HEADER}': expected the JSON part's length in bytes, got {raw_length!r}"
        ) from None
    if not 0 <= json_length <= len(body):
        raise InvalidInput(
            f"header '{INFERENCE_CONTENT_LENGTH_HEADER}': {json_length} bytes of JSON, but the body holds {len(body)}"
        )
    try:
        header = orjson.loads(body[:json_length])
    except orjson.JSONDecodeError:
        return  # kserve reports it ("Unrecognized request format")
    inputs = header.get("inputs") if isinstance(header, dict) else None
    left = len(body) - json_length
    for inp in inputs if isinstance(inputs, list) else []:
        if not isinstance(inp, dict) or inp.get("data") is not None:
            continue  # JSON data: no binary part (kserve reads binary_data_size only without it)
        params = inp.get("parameters")
        if not isinstance(params, dict) or "binary_data_size" not in params:
            continue
        size, name = params["binary_data_size"], inp.get("name")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InvalidInput(f"input '{name}': binary_data_size must be a byte count >= 0, got {size!r}")
        if size > left:
            raise InvalidInput(
                f"input '{name}': binary_data_size is {size} bytes, but only {left} bytes of the body are left for it"
            )
        left -= size


class StrictDataPlane(DataPlane):
    """See the module docstring; only ``decode`` and ``infer`` differ from kserve's."""

    def decode(self, body: Any, headers: Any, *args: Any, **kwargs: Any) -> Any:
        protocol = kwargs.get("protocol_version", args[0] if args else PredictorProtocol.REST_V1.value)
        try:
            if isinstance(body, bytes) and str(protocol).lower() == PredictorProtocol.REST_V2.value:
                check_v2_body(body, headers or {})
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

    async def infer(self, model_name: str, request: Any, headers: Any = None) -> Any:
        try:
            return await super().infer(model_name, request, headers)
        except HANDLED:
            raise
        except Exception as exc:
            raise InferenceError(
                f"internal error in model '{model_name}' ({type(exc).__name__}); see the server log"
            ) from exc
