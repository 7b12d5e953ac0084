"""Fixtures for the CleverTap client tests: the emulator served over HTTP and a client for it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import requests
from requests.adapters import HTTPAdapter

from ct_pipeline.clevertap import CleverTapResource, UploadItem, build_profile_record
from ct_pipeline.sandbox.clevertap_emulator import create_clevertap_app
from ct_pipeline.sandbox.credentials import (
    SANDBOX_CLEVERTAP_ACCOUNT_ID,
    SANDBOX_CLEVERTAP_PASSCODE,
)
from ct_pipeline.sandbox.server import RunningServer, serving

PROFILE_TS = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)
# Backoff short enough that a storm of retries costs milliseconds, not minutes.
TEST_SETTINGS = {
    "max_retries": 4,
    "backoff_base_seconds": 0.001,
    "backoff_cap_seconds": 0.01,
    "timeout_seconds": 5.0,
}


class SandboxAdmin:
    """The emulator's `/__sandbox/` API: what it received, and faults to inject."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._http = httpx.Client(base_url=url, timeout=30)

    def reset(self) -> None:
        """Empty the account, drop faults, forget the request log."""
        self._http.post("/__sandbox/reset").raise_for_status()

    def faults(self, **faults: Any) -> dict:
        """Inject faults (see the emulator's `FaultRequest`)."""
        response = self._http.post("/__sandbox/faults", json=faults)
        response.raise_for_status()
        return response.json()

    def requests(self, path: str | None = None) -> list[dict]:
        """Logged API requests, oldest first."""
        params = {"path": path} if path else {}
        response = self._http.get("/__sandbox/requests", params=params)
        response.raise_for_status()
        return response.json()["requests"]

    def profiles(self, identity: str | None = None) -> list[dict]:
        """Stored profiles, or the one with `identity`."""
        params = {"identity": identity} if identity else {}
        response = self._http.get("/__sandbox/profiles", params=params)
        response.raise_for_status()
        return response.json()["profiles"]

    def profile_count(self) -> int:
        """How many profiles the account holds."""
        response = self._http.get("/__sandbox/profiles", params={"limit": 0})
        response.raise_for_status()
        return response.json()["count"]

    def events(self, identity: str | None = None, name: str | None = None) -> list[dict]:
        """Stored events, optionally of one identity or name."""
        params = {key: value for key, value in (("identity", identity), ("name", name)) if value}
        response = self._http.get("/__sandbox/events", params=params)
        response.raise_for_status()
        return response.json()["events"]

    def triggers(self) -> list[dict]:
        """External-trigger requests received."""
        response = self._http.get("/__sandbox/triggers")
        response.raise_for_status()
        return response.json()["triggers"]

    def stats(self) -> dict:
        """Request, status and record counters, and the concurrency high-water marks."""
        response = self._http.get("/__sandbox/stats")
        response.raise_for_status()
        return response.json()

    def close(self) -> None:
        """Close the admin HTTP client."""
        self._http.close()


@pytest.fixture(scope="session")
def clevertap_server() -> Iterator[RunningServer]:
    """One emulator for the whole session, with CleverTap's default limits."""
    with serving(create_clevertap_app()) as server:
        yield server


@pytest.fixture
def sandbox(clevertap_server: RunningServer) -> Iterator[SandboxAdmin]:
    """The emulator's admin API, on an empty account with no faults."""
    admin = SandboxAdmin(clevertap_server.url)
    admin.reset()
    yield admin
    admin.close()


@pytest.fixture
def clevertap(sandbox: SandboxAdmin) -> Iterator[CleverTapResource]:
    """A client pointed at the emulator with the sandbox credentials and fast retries."""
    resource = sandbox_client(sandbox.url)
    yield resource
    resource.close()


class RouteToEmulator(HTTPAdapter):
    """A requests transport adapter that delivers requests for CleverTap's real hosts to an
    emulator, keeping the host they were addressed to in the Host header."""

    def __init__(self, emulator_url: str) -> None:
        super().__init__(max_retries=0)
        self._emulator = urlsplit(emulator_url)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        """Send `request` to the emulator as if it had reached the host in its URL."""
        addressed = urlsplit(request.url)
        request.headers["Host"] = addressed.netloc
        request.url = urlunsplit((self._emulator.scheme, self._emulator.netloc, *addressed[2:]))
        return super().send(request, **kwargs)


def sandbox_client(url: str, **settings: Any) -> CleverTapResource:
    """A CleverTapResource for the emulator at `url`; `settings` override the test defaults."""
    defaults = {
        "account_id": SANDBOX_CLEVERTAP_ACCOUNT_ID,
        "passcode": SANDBOX_CLEVERTAP_PASSCODE,
        "api_url": url,
        **TEST_SETTINGS,
    }
    return CleverTapResource(**{**defaults, **settings})


def phone_of(number: int) -> str:
    """A made-up Indian mobile number in E.164 form."""
    return f"+9190{number:08d}"


def profile_items(count: int, start: int = 0) -> list[UploadItem]:
    """`count` valid profile items keyed zoho-<n>, identities made-up phone numbers."""
    return [
        UploadItem(
            f"zoho-{n}",
            build_profile_record(
                phone_of(n),
                {"Name": f"Customer {n}", "Phone": phone_of(n), "Customer Type": "Gold"},
                PROFILE_TS,
            ),
        )
        for n in range(start, start + count)
    ]
