"""Exception handlers: every error is JSON ``{"detail": "<what is wrong and what to do>"}``, never a 500 for bad input.

Request validation errors (wrong types, malformed JSON, missing fields) become 422 with a
one-line ``detail`` naming each bad field, plus the structured pydantic ``errors``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from emulator.checkpoint import InvalidModelDir
from emulator.conditions import ConditionError
from emulator.registry import UnknownModel
from services.limits import Overloaded
from services.responses import GenerationFailed

__all__ = ["install_error_handlers"]

log = logging.getLogger("services")


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts) or "body"


def _describe(errors: list[dict[str, Any]]) -> str:
    """One line per distinct problem, e.g. ``n: Input should be greater than 0``."""
    lines: list[str] = []
    for err in errors:
        if err.get("type") == "json_invalid":
            line = f"malformed JSON body: {err.get('ctx', {}).get('error', err.get('msg'))}"
        else:
            line = f"{_field(tuple(err.get('loc', ())))}: {err.get('msg')}"
        if line not in lines:
            lines.append(line)
    return "invalid request: " + "; ".join(lines[:5]) + ("; ..." if len(lines) > 5 else "")


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        content={"detail": _describe(errors), "errors": jsonable_encoder(errors, exclude={"input", "url"})},
    )


async def _unknown_model(_request: Request, exc: UnknownModel) -> JSONResponse:
    return JSONResponse(status_code=status.HTTP_404_NOT_FOUND, content={"detail": str(exc)})


async def _condition_error(_request: Request, exc: ConditionError) -> JSONResponse:
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        content={"detail": f"invalid conditions: {exc}"},
    )


async def _generation_failed(_request: Request, exc: GenerationFailed) -> JSONResponse:
    return JSONResponse(status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, content={"detail": exc.detail})


async def _broken_model(_request: Request, exc: InvalidModelDir) -> JSONResponse:
    # The server's model directory is unusable: not the client's fault, and not transient.
    log.error("model directory cannot be loaded: %s", exc)
    return JSONResponse(
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        content={"detail": f"this model cannot be loaded on the server: {exc}"},
    )


async def _overloaded(_request: Request, exc: Overloaded) -> JSONResponse:
    return JSONResponse(
        status_code=status.HTTP_429_TOO_MANY_REQUESTS,
        content={"detail": str(exc)},
        headers={"Retry-After": str(exc.retry_after_s)},
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # A bug, not bad input: log it with the traceback, answer without internals.
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        status_code=status.HTTP_500_INTERNAL_SERVER_ERROR,
        content={"detail": f"internal error ({type(exc).__name__}); see the server log"},
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers above on ``app``."""
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(UnknownModel, _unknown_model)  # type: ignore[arg-type]
    app.add_exception_handler(ConditionError, _condition_error)  # type: ignore[arg-type]
    app.add_exception_handler(Overloaded, _overloaded)  # type: ignore[arg-type]
    app.add_exception_handler(GenerationFailed, _generation_failed)  # type: ignore[arg-type]
    app.add_exception_handler(InvalidModelDir, _broken_model)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)
