"""Opaque, signed page tokens for Get Records and Bulk Read, with Zoho's expiry rules.

Tokens carry their own state (module, the request they are bound to, the offset reached and an
expiry), signed so a client cannot forge one; the emulator keeps nothing per token, so a million
record read leaves no trail in memory. Bumping the generation expires every token at once, which
is how the sandbox injects "page token expired" faults.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from ct_pipeline.sandbox.zoho_emulator.replies import ZohoApiError

# Get Records: "The page token is valid for 24 hours" ([v7-get], research/zoho.md §2).
PAGE_TOKEN_TTL_SECONDS = 24 * 3600
SIGNATURE_BYTES = 12


class TokenCodec:
    """Issues and checks page tokens; `expire_all()` invalidates every token issued so far."""

    def __init__(self, clock: Callable[[], datetime], ttl_seconds: int = PAGE_TOKEN_TTL_SECONDS):
        self._secret = secrets.token_bytes(32)
        self._clock = clock
        self.ttl_seconds = ttl_seconds
        self.generation = 0

    def issue(self, payload: Mapping[str, Any]) -> tuple[str, float]:
        """A token for `payload` and its expiry as epoch seconds."""
        expiry = self._clock().timestamp() + self.ttl_seconds
        body = dict(payload, x=int(expiry), g=self.generation)
        encoded = base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode())
        text = encoded.decode().rstrip("=")
        return f"{text}.{self._sign(text)}", expiry

    def read(self, token: str, param: str = "page_token") -> dict[str, Any]:
        """The payload of a token this codec issued; INVALID_DATA or EXPIRED_VALUE otherwise."""
        text, _, signature = token.partition(".")
        if not signature or not hmac.compare_digest(signature, self._sign(text)):
            raise ZohoApiError(
                400, "INVALID_DATA", f"the given {param} is invalid", {"param_name": param}
            )
        padded = text + "=" * (-len(text) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded))
        if payload["g"] != self.generation or payload["x"] <= self._clock().timestamp():
            raise ZohoApiError(
                400, "EXPIRED_VALUE", f"the given {param} has expired", {"param_name": param}
            )
        return payload

    def expire_all(self) -> None:
        """Make every token issued so far answer EXPIRED_VALUE."""
        self.generation += 1

    def _sign(self, text: str) -> str:
        digest = hmac.new(self._secret, text.encode(), hashlib.sha256).digest()
        return digest[:SIGNATURE_BYTES].hex()


def binding(parts: Mapping[str, Any]) -> str:
    """A short digest of the request parameters a token is bound to."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
