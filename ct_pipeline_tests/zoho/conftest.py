"""Fixtures for the Zoho client tests: synthetic CRM data served by the Zoho emulator over HTTP."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from ct_pipeline.sandbox import credentials
from ct_pipeline.sandbox.server import start_in_thread
from ct_pipeline.sandbox.synthetic import SyntheticCrm, generate_crm
from ct_pipeline.sandbox.zoho_emulator import create_zoho_app
from ct_pipeline.zoho import ZohoCRMResource
from ct_pipeline.zoho.http import clear_token_cache

# More than the 2,000 records that `page` alone reaches, so every full read needs page tokens.
CONTACTS = 2_500
SEED = 11
CUSTOM_TEXT_FIELDS = 30
# Fast enough for tests; the production defaults wait seconds between retries and polls.
FAST_CLIENT = {
    "retry_initial_wait": 0.01,
    "retry_max_wait": 0.05,
    "bulk_poll_interval": 0.05,
    "timeout": 30.0,
}
CONTACT_FIELDS = [
    "First_Name",
    "Last_Name",
    "Email",
    "Mobile",
    "Owner",
    "Account_Name",
    "Subscription_Value_INR",
    "App_Uninstalled",
    "Date_of_Birth",
    "Created_Time",
    "Modified_Time",
]


@dataclasses.dataclass
class Sandbox:
    """A running Zoho emulator, its admin API, and clients pointed at it."""

    url: str

    def client(self, **overrides: Any) -> ZohoCRMResource:
        """A resource with the sandbox credentials, both hosts overridden to the emulator."""
        settings: dict[str, Any] = {
            "client_id": credentials.SANDBOX_ZOHO_CLIENT_ID,
            "client_secret": credentials.SANDBOX_ZOHO_CLIENT_SECRET,
            "refresh_token": credentials.SANDBOX_ZOHO_REFRESH_TOKEN,
            "accounts_url": self.url,
            "api_domain": self.url,
            **FAST_CLIENT,
        }
        settings.update(overrides)
        return ZohoCRMResource(**settings)

    def faults(self, **faults: Any) -> None:
        """Queue faults for the next CRM calls (`POST /__sandbox/faults`)."""
        self._admin("POST", "/__sandbox/faults", json=faults)

    def upsert(self, module: str, records: list[dict[str, Any]]) -> None:
        """Create or edit records as a CRM user would; edits move Modified_Time."""
        self._admin("POST", f"/__sandbox/records/{module}", json=records)

    def delete(self, module: str, record_id: str) -> None:
        """Delete one record into the recycle bin."""
        self._admin("DELETE", f"/__sandbox/records/{module}/{record_id}")

    def delete_many(self, module: str, record_ids: list[str]) -> None:
        """Delete records into the recycle bin in one admin call, as a mass delete does."""
        self._admin("POST", f"/__sandbox/records/{module}/delete", json={"ids": record_ids})

    def record(self, module: str, record_id: str) -> dict[str, Any]:
        """One record as the API would serve it, plus its Notes under "notes"."""
        answer = self._admin("GET", f"/__sandbox/records/{module}/{record_id}")
        return {**answer["record"], "notes": answer["notes"]}

    def stats(self) -> dict[str, Any]:
        """Calls, statuses, credits and token grants the emulator counted."""
        return self._admin("GET", "/__sandbox/stats")

    def _admin(self, method: str, path: str, **kwargs: Any) -> Any:
        response = requests.request(method, self.url + path, timeout=30, **kwargs)
        assert response.status_code < 400, f"admin {method} {path}: {response.status_code}"
        return response.json() if response.content else None


@pytest.fixture(scope="session")
def crm() -> SyntheticCrm:
    """2,500 synthetic contacts with their leads, deals and cases."""
    return generate_crm(CONTACTS, seed=SEED)


@pytest.fixture(scope="session")
def wide_crm(crm: SyntheticCrm) -> SyntheticCrm:
    """The same CRM with 30 custom text fields on Contacts, so a read can ask for more than 50."""
    contacts = crm.contacts.copy()
    for number in range(1, CUSTOM_TEXT_FIELDS + 1):
        contacts[f"Custom_Text_{number:02d}"] = contacts["id"].str[-6:] + f"-{number}"
    return dataclasses.replace(crm, contacts=contacts)


@pytest.fixture
def start_sandbox(crm: SyntheticCrm) -> Iterator[Callable[..., Sandbox]]:
    """Start emulators with the given `create_zoho_app` options; all are stopped afterwards."""
    # A new emulator can get the port of an earlier one, whose tokens the client still caches.
    clear_token_cache()
    servers = []

    def start(data: SyntheticCrm | None = None, **options: Any) -> Sandbox:
        options.setdefault("bulk_job_seconds", 0.1)
        server = start_in_thread(create_zoho_app(data if data is not None else crm, **options))
        servers.append(server)
        return Sandbox(server.url)

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def sandbox(start_sandbox: Callable[..., Sandbox]) -> Sandbox:
    """An emulator with Zoho's documented limits."""
    return start_sandbox()


@pytest.fixture(params=[True, False], ids=["since-inclusive", "since-exclusive"])
def since_inclusive(request: pytest.FixtureRequest) -> bool:
    """Whether the emulator's If-Modified-Since lets its own second through (as Zoho is reported
    to) or only later ones (as Zoho documents)."""
    return request.param


@pytest.fixture
def since_sandbox(start_sandbox: Callable[..., Sandbox], since_inclusive: bool) -> Sandbox:
    """An emulator with each of the two If-Modified-Since semantics in turn."""
    return start_sandbox(if_modified_since_inclusive=since_inclusive)
