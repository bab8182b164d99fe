"""HTTP plumbing shared by the routes: one error shape with a stable code, the status each error
kind maps to, the PAI-EAS error codes, request size limits, and who may call (keys or loopback)."""

from __future__ import annotations

import ipaddress
import json

from fastapi import Request
from fastapi.responses import JSONResponse

from factory import errors
from targets.predictor import ImageInputError
from serving.access import AuthError

MAX_REQUEST_BYTES = 20 * 2 ** 20

STATUS = {  # error kind -> HTTP status; the code in the body says exactly what
    errors.NotFoundError: 404, errors.ConfigError: 422, errors.DatasetError: 422, errors.UnsupportedSpecError: 422,
    errors.BudgetError: 422, errors.ParityError: 422, errors.MissingDependencyError: 503, errors.CatalogError: 503,
    ImageInputError: 400, AuthError: 401,
}
CODE_STATUS = {"FORBIDDEN": 403, "PAYLOAD_TOO_LARGE": 413, "INPUT_FORMAT_ERROR": 400, "DECOMPRESSION_BOMB": 400,
               "LINK_EXPIRED": 403, "LINK_REVOKED": 403, "LINK_INVALID": 403, "LOOPBACK_ONLY": 403, "RATE_LIMITED": 429, "TOO_MANY_JOBS": 429,
               "CATALOG_BUSY": 503}


class InputFormatError(errors.FactoryError):
    """The request's shape is wrong (missing field, bad base64, wrong content type)."""

    code = "INPUT_FORMAT_ERROR"


def status_of(exc: errors.FactoryError) -> int:
    if exc.code in CODE_STATUS:
        return CODE_STATUS[exc.code]
    for kind in type(exc).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    return 500


def error_response(exc: errors.FactoryError) -> JSONResponse:
    return JSONResponse({"error": {"code": exc.code, "message": exc.message, "fix": exc.fix}}, status_code=status_of(exc))


def pai_error(exc: Exception) -> JSONResponse:
    """The PAI-EAS error body: errorCode as a string, one of 1001 / 1002 / 2001 / 2002 / 2003."""
    code = getattr(exc, "code", "")
    if code in ("INPUT_FORMAT_ERROR", "PAYLOAD_TOO_LARGE"):
        pair, status = ("1001", "INPUT_FORMAT_ERROR"), 400
    elif isinstance(exc, ImageInputError):
        pair, status = ("1002", "IMAGE_DECODE_ERROR"), 400
    elif isinstance(exc, AuthError):  # the code says what the status says: 401 no or bad key, 403 out of scope
        status = status_of(exc)
        return JSONResponse({"success": False, "errorCode": str(status),
                             "errorMsg": "FORBIDDEN" if status == 403 else "UNAUTHORIZED",
                             "message": exc.message}, status_code=status)
    elif isinstance(exc, errors.NotFoundError):  # no such service: the client's mistake, PAI's code
        pair, status = ("2002", "GET_INSTANCE_ERROR"), 404
    elif isinstance(exc, (errors.MissingDependencyError, errors.UnsupportedSpecError, errors.ModelFileError)):
        pair, status = ("2002", "GET_INSTANCE_ERROR"), 503
    elif code == "MODEL_FORWARD_ERROR":
        pair, status = ("2003", "MODEL_FORWARD_ERROR"), 500
    else:
        pair, status = ("2001", "UNKNOWN_ERROR"), 500
    body = {"success": False, "errorCode": pair[0], "errorMsg": pair[1]}
    if isinstance(exc, errors.FactoryError):
        body["message"] = exc.message
    return JSONResponse(body, status_code=status)


def is_loopback(request: Request) -> bool:
    """Whether the socket's peer is this host (an address, never a name: uvicorn gives the peer's address)."""
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bearer(request: Request) -> str | None:
    """The key from `Authorization: Bearer <key>` or a bare token (the PAI-EAS header)."""
    value = request.headers.get("authorization", "").strip()
    if not value:
        return None
    return value[7:].strip() if value.lower().startswith("bearer ") else value


async def read_limited(request: Request, limit: int = MAX_REQUEST_BYTES) -> bytes:
    """The request body, refused once it passes `limit` bytes (checked while reading, not only by header)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large(int(declared), limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large(len(body), limit)
    return bytes(body)


def parse_json(body: bytes, fix: str) -> object:
    """The JSON value of a request body; InputFormatError for invalid, non-UTF-8 or too deeply nested JSON (Python's
    parser gives up near 1,000 levels with a RecursionError)."""
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputFormatError("The body is not valid JSON.", fix=fix) from None
    except RecursionError:
        raise InputFormatError("The JSON body nests too deeply.", fix=fix) from None


def too_large(size: int, limit: int) -> errors.FactoryError:
    shown = f"{limit // 2 ** 20} MB" if limit >= 2 ** 20 else f"{limit // 2 ** 10} KB"
    return errors.FactoryError(f"The request is {size:,} bytes, over the {shown} limit.",
                               fix="Send a smaller image (resize it on the client) or fewer images per batch.",
                               code="PAYLOAD_TOO_LARGE")
