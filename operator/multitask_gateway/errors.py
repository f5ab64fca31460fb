"""Errors the gateway answers with, in TGI's `{"error", "error_type"}` shape.

Clients written for TGI (and huggingface_hub's client, which maps error_type to an exception
class) keep working: validation problems are 422 `validation`, a full task is 429 `overloaded`,
as TGI itself answers. Upstream trouble gets its own types so that people can tell the gateway
from the inference server: 502 `upstream` (it answered badly), 503 `upstream_unavailable`
(unreachable), 504 `upstream_timeout` (no byte within limits.timeoutSeconds).

The OpenAI-compatible endpoints answer the same errors in OpenAI's shape,
`{"error": {"message", "type", "param", "code"}}`, so that each SDK raises its own exception
class; `code` is the gateway's error_type and `param` names the request field at fault.
"""

from __future__ import annotations

import json

from aiohttp import web

# OpenAI's error `type` by HTTP status (what its SDKs and LangChain look at besides the status).
OPENAI_TYPES = {400: "invalid_request_error", 404: "invalid_request_error",
                413: "invalid_request_error", 429: "rate_limit_error"}


class GatewayError(Exception):
    def __init__(
        self, status: int, message: str, error_type: str, param: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.param = param

    def body(self) -> dict[str, str]:
        return {"error": self.message, "error_type": self.error_type}

    def response(self) -> web.Response:
        return web.json_response(self.body(), status=self.status)

    def sse(self) -> bytes:
        """The error as a server-sent event, for failures after a stream has started."""
        return b"data:" + json.dumps(self.body()).encode() + b"\n\n"

    # ------------------------------------------------------------------ OpenAI's shape

    @property
    def openai_status(self) -> int:
        # TGI and the gateway say 422 for a request that fails validation; OpenAI, vLLM and
        # every OpenAI SDK say 400 (BadRequestError), e.g. for a prompt that is too long.
        return 400 if self.status == 422 else self.status

    def openai_body(self) -> dict[str, dict[str, str | None]]:
        kind = OPENAI_TYPES.get(self.openai_status)
        if kind is None:
            kind = "server_error" if self.openai_status >= 500 else "invalid_request_error"
        return {"error": {"message": self.message, "type": kind, "param": self.param,
                          "code": self.error_type}}

    def openai_response(self) -> web.Response:
        return web.json_response(self.openai_body(), status=self.openai_status)

    def openai_sse(self) -> bytes:
        return b"data: " + json.dumps(self.openai_body()).encode() + b"\n\n"


def validation(message: str, param: str | None = None) -> GatewayError:
    return GatewayError(422, message, "validation", param)


def bad_request(message: str, param: str | None = None) -> GatewayError:
    return GatewayError(400, message, "bad_request", param)


def not_found(message: str, param: str | None = None) -> GatewayError:
    return GatewayError(404, message, "not_found", param)


def unavailable(message: str) -> GatewayError:
    return GatewayError(503, message, "upstream_unavailable")


def timeout(message: str) -> GatewayError:
    return GatewayError(504, message, "upstream_timeout")


def unreachable(url: str, cause: object) -> GatewayError:
    return unavailable(f"the inference server at {url} is unreachable: {cause}")


def silent(url: str, seconds: float) -> GatewayError:
    return timeout(f"the inference server at {url} sent nothing for {seconds:g} s")


def bad_upstream(message: str) -> GatewayError:
    return GatewayError(502, message, "upstream")


def from_upstream_status(status: int, message: str, error_type: str | None) -> GatewayError:
    """An error the inference server answered with: a client mistake (4xx) keeps its status and
    type; a server failure becomes 502, or 503 when the server says it is not ready."""
    if 400 <= status < 500:
        return GatewayError(status, message, error_type or "validation")
    if status == 503:
        return unavailable(f"the inference server is not ready: {message}")
    return bad_upstream(f"the inference server failed (HTTP {status}): {message}")
