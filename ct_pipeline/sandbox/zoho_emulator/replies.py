"""What an emulator handler returns: a status, an optional JSON body, and Zoho's error envelope.

Zoho's errors share one envelope, `{"code", "details", "message", "status": "error"}`
(zoho/crm-oas v8 `common.json`, schema `API_Exception`); handlers raise `ZohoApiError` and the
app turns it into that body with its HTTP status.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Reply:
    """One HTTP answer: status, JSON body (None for 204/304), extra headers, or raw bytes."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes | None = None
    media_type: str | None = None


class ZohoApiError(Exception):
    """A request Zoho would refuse as a whole; carries the documented code and details."""

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}

    def reply(self) -> Reply:
        """The error as Zoho serves it."""
        return Reply(self.status, error_body(self.code, self.message, self.details))


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """Zoho's error envelope (also used per record inside `data[]` of batch writes)."""
    return {"code": code, "details": details or {}, "message": message, "status": "error"}


def invalid_data(message: str, **details: Any) -> ZohoApiError:
    """HTTP 400 INVALID_DATA, the code Zoho uses for a malformed value or parameter."""
    return ZohoApiError(400, "INVALID_DATA", message, details)


def not_found_url() -> ZohoApiError:
    """HTTP 404 INVALID_URL_PATTERN, Zoho's answer to a path it does not serve."""
    return ZohoApiError(
        404,
        "INVALID_URL_PATTERN",
        "Please check if the URL trying to access is a correct one",
    )
