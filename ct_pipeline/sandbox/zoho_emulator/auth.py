"""Zoho Accounts' refresh-token grant and the `Zoho-oauthtoken` check, as the emulator does them.

Sources (research/zoho.md §1): `POST {accounts}/oauth/v2/token` with grant_type=refresh_token,
client_id, client_secret and refresh_token, in the query string or a form body; success is
`{access_token, expires_in, api_domain, token_type}`; failures are HTTP 200 with an `error` key
(`invalid_client`, `invalid_code`); the accounts throttle answers HTTP 400 "Access Denied".
An unknown or expired token on the CRM API is HTTP 401 INVALID_TOKEN. The token travels as
`Authorization: Zoho-oauthtoken <token>`; Zoho's docs and SDKs use no other scheme, and a client
sending `Bearer` (the token answer's `token_type`) was refused by Zoho CRM
(github.com/NangoHQ/nango/issues/198), so a Bearer header is answered as a missing one.
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from datetime import datetime

from ct_pipeline.sandbox.credentials import (
    SANDBOX_ZOHO_CLIENT_ID,
    SANDBOX_ZOHO_CLIENT_SECRET,
    SANDBOX_ZOHO_REFRESH_TOKEN,
)
from ct_pipeline.sandbox.zoho_emulator.replies import Reply, ZohoApiError

ACCESS_TOKEN_TTL_SECONDS = 3600
# "up to ten access tokens in a span of ten minutes" per refresh token (Zoho Accounts docs).
TOKEN_THROTTLE_WINDOW_SECONDS = 600
HEADER_PREFIX = "Zoho-oauthtoken "
# The API domain each data centre's accounts server names in its token answers (research/zoho.md
# §1): a request that reaches the emulator under one of these host names is answered as that
# data centre would answer it.
API_DOMAIN_BY_ACCOUNTS_HOST = {
    "accounts.zoho.com": "https://www.zohoapis.com",
    "accounts.zoho.eu": "https://www.zohoapis.eu",
    "accounts.zoho.in": "https://www.zohoapis.in",
    "accounts.zoho.com.au": "https://www.zohoapis.com.au",
    "accounts.zoho.jp": "https://www.zohoapis.jp",
    "accounts.zoho.com.cn": "https://www.zohoapis.com.cn",
    "accounts.zohocloud.ca": "https://www.zohoapis.ca",
    "accounts.zoho.sa": "https://www.zohoapis.sa",
}


class TokenIssuer:
    """Grants access tokens for the sandbox credentials and checks them on each API call."""

    def __init__(
        self,
        clock: Callable[[], datetime],
        ttl_seconds: int = ACCESS_TOKEN_TTL_SECONDS,
        grants_per_ten_minutes: int | None = None,
    ) -> None:
        self._clock = clock
        self.ttl_seconds = ttl_seconds
        self.grants_per_ten_minutes = grants_per_ten_minutes
        self._expiry_by_token: dict[str, float] = {}
        self._recent_grants: deque[float] = deque()

    def grant(self, params: Mapping[str, str], api_domain: str) -> Reply:
        """Answer a token request the way Zoho Accounts does (errors are HTTP 200)."""
        if params.get("grant_type") != "refresh_token":
            return Reply(200, {"error": "unsupported_grant_type"})
        if (
            params.get("client_id") != SANDBOX_ZOHO_CLIENT_ID
            or params.get("client_secret") != SANDBOX_ZOHO_CLIENT_SECRET
        ):
            return Reply(200, {"error": "invalid_client"})
        if params.get("refresh_token") != SANDBOX_ZOHO_REFRESH_TOKEN:
            return Reply(200, {"error": "invalid_code"})
        if self._throttled():
            return Reply(
                400,
                {
                    "error_description": "You have made too many requests continuously. "
                    "Please try again after some time.",
                    "error": "Access Denied",
                    "status": "failure",
                },
            )

        token = f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"
        now = self._clock().timestamp()
        self._expiry_by_token = {
            known: expiry for known, expiry in self._expiry_by_token.items() if expiry > now
        }
        self._expiry_by_token[token] = now + self.ttl_seconds
        return Reply(
            200,
            {
                "access_token": token,
                "scope": "ZohoCRM.modules.ALL ZohoCRM.settings.ALL ZohoCRM.bulk.ALL",
                "api_domain": api_domain,
                "token_type": "Bearer",
                "expires_in": self.ttl_seconds,
            },
        )

    def check(self, authorization: str | None) -> None:
        """Raise 401 unless the header is `Zoho-oauthtoken <a live token this issuer granted>`."""
        if not authorization or not authorization.startswith(HEADER_PREFIX):
            raise ZohoApiError(
                401,
                "AUTHENTICATION_FAILURE",
                "Authentication failed: send Authorization: Zoho-oauthtoken <access token>",
            )
        token = authorization[len(HEADER_PREFIX) :].strip()
        expiry = self._expiry_by_token.get(token)
        if expiry is None or expiry <= self._clock().timestamp():
            raise ZohoApiError(401, "INVALID_TOKEN", "invalid oauth token")

    def expire_all(self) -> None:
        """Expire every access token granted so far (clients must refresh)."""
        self._expiry_by_token.clear()

    def _throttled(self) -> bool:
        if self.grants_per_ten_minutes is None:
            return False
        now = time.monotonic()
        while self._recent_grants and self._recent_grants[0] < now - TOKEN_THROTTLE_WINDOW_SECONDS:
            self._recent_grants.popleft()
        if len(self._recent_grants) >= self.grants_per_ten_minutes:
            return True
        self._recent_grants.append(now)
        return False
