"""A harness for the write-back flow: the webhook receiver and the Zoho emulator, over HTTP.

The Zoho emulator is shared by the tests of a module (seeding it takes seconds); each test gets
its own warehouse and receiver, and its own Contacts from the emulator, so tests never see each
other's writes. The warehouse starts as the forward flow leaves it: every Contact with a valid
mobile number pushed under that number (`clevertap_pushed_profiles`, `contact_identities`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
import requests
import yaml

from ct_pipeline.assets.writeback import WRITEBACK_ASSETS, WRITEBACK_CHECKS, WRITEBACK_JOBS
from ct_pipeline.config import SyncConfigResource
from ct_pipeline.identity import normalize_emails, normalize_phones
from ct_pipeline.sandbox import credentials
from ct_pipeline.sandbox.launch import RunningSandbox, start_sandbox
from ct_pipeline.sandbox.server import RunningServer, start_in_thread
from ct_pipeline.warehouse import WarehouseResource
from ct_pipeline.warehouse.state import PUSHED_PROFILES
from ct_pipeline.webhooks import WEBHOOK_PATH, create_webhook_app
from ct_pipeline.zoho import ZohoCRMResource

CONTACTS = 400
SEED = 23
TOKEN = "test-webhook-secret-0123456789"
PACKAGED_CONFIG = Path(str(resources.files("ct_pipeline").joinpath("sync.example.yaml")))


@dataclass(frozen=True)
class Person:
    """A Contact of the emulator and the identity the forward flow pushed it under."""

    contact_id: str
    identity: str
    email: str | None


@dataclass
class ContactPool:
    """Contacts with a unique, valid mobile, handed out once each across a module's tests."""

    people: list[Person]
    next_index: int = 0

    def take(self, count: int = 1) -> list[Person]:
        """`count` Contacts no other test has used."""
        chosen = self.people[self.next_index : self.next_index + count]
        if len(chosen) < count:
            raise RuntimeError("the emulator has too few usable Contacts; raise CONTACTS")
        self.next_index += count
        return chosen


@dataclass
class ReceiverClock:
    """When the receiver believes a delivery arrives: the real time unless a test sets one."""

    moment: datetime | None = None

    def __call__(self) -> datetime:
        return self.moment or datetime.now(UTC)


@dataclass
class Writeback:
    """One test's receiver, warehouse and Dagster instance, with the shared Zoho emulator."""

    sandbox: RunningSandbox
    warehouse: WarehouseResource
    instance: dg.DagsterInstance
    receiver: RunningServer
    pool: ContactPool
    clock: ReceiverClock
    runs: list[dg.ExecuteInProcessResult] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The receiver's webhook URL."""
        return f"{self.receiver.url}{WEBHOOK_PATH}"

    def post(self, body: Any, token: str | None = TOKEN, **kwargs: Any) -> requests.Response:
        """POST a JSON body (or `data=` bytes) to the receiver with the bearer token."""
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        if "data" not in kwargs:
            kwargs["json"] = body
        return requests.post(self.url, headers=headers, timeout=30, **kwargs)

    def zoho_resource(self, **overrides: Any) -> ZohoCRMResource:
        """A Zoho client pointed at the emulator, with short retry waits."""
        settings: dict[str, Any] = {
            "client_id": credentials.SANDBOX_ZOHO_CLIENT_ID,
            "client_secret": credentials.SANDBOX_ZOHO_CLIENT_SECRET,
            "refresh_token": credentials.SANDBOX_ZOHO_REFRESH_TOKEN,
            "accounts_url": self.sandbox.zoho.url,
            "api_domain": self.sandbox.zoho.url,
            "retry_initial_wait": 0.01,
            "retry_max_wait": 0.02,
            **overrides,
        }
        return ZohoCRMResource(**settings)

    def run(
        self, sync_config: Path | None = None, **zoho_overrides: Any
    ) -> dg.ExecuteInProcessResult:
        """Run the crm_writeback job in process (with the packaged configuration unless given);
        failures are returned, not raised."""
        defs = dg.Definitions(
            assets=WRITEBACK_ASSETS,
            asset_checks=WRITEBACK_CHECKS,
            jobs=WRITEBACK_JOBS,
            resources={
                "zoho": self.zoho_resource(**zoho_overrides),
                "warehouse": self.warehouse,
                "sync_config": SyncConfigResource(path=str(sync_config) if sync_config else None),
            },
        )
        result = defs.resolve_job_def("crm_writeback").execute_in_process(
            instance=self.instance, raise_on_error=False
        )
        self.runs.append(result)
        return result

    def contact(self, contact_id: str) -> dict[str, Any]:
        """The emulator's record of a Contact, with its `notes`."""
        return self.zoho_admin("GET", f"records/Contacts/{contact_id}")

    def zoho_admin(self, method: str, path: str, body: Any = None) -> Any:
        """Call the Zoho emulator's admin API."""
        response = requests.request(
            method, f"{self.sandbox.zoho.url}/__sandbox/{path}", json=body, timeout=30
        )
        response.raise_for_status()
        return response.json()

    def zoho_calls(self, endpoint: str) -> int:
        """Calls the emulator has answered on `endpoint`, e.g. 'PUT /crm/v8/Contacts'."""
        return int(self.zoho_admin("GET", "stats")["calls"].get(endpoint, 0))

    def inbox(self) -> pd.DataFrame:
        """The whole inbox table, indexed by event id."""
        return self.warehouse.read_table("clevertap_webhook_inbox").set_index("event_id")


def writeback_config(folder: Path, **writeback: Any) -> Path:
    """The packaged sync configuration with these `writeback` settings changed, as a file."""
    document = yaml.safe_load(PACKAGED_CONFIG.read_text(encoding="utf-8"))
    document["writeback"].update(writeback)
    path = folder / "sync.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def delivery(event: str, *profiles: dict[str, Any], target_id: int = 1700000101) -> dict:
    """A CleverTap campaign webhook body whose key-value pairs name `event`."""
    return {"targetId": target_id, "key_values": {"event": event}, "profiles": list(profiles)}


def profile(person: Person, at: datetime | None = None, **extra: Any) -> dict[str, Any]:
    """A profile entry as CleverTap sends it for `person`, the event at time `at`."""
    at = at or datetime(2026, 3, 5, 10, 30, tzinfo=UTC)
    entry: dict[str, Any] = {
        "identity": person.identity,
        "objectId": f"__g{person.contact_id[-12:]}",
        "profileData": {"Last Score": 3},
        "event_properties": {"event_time": int(at.timestamp()), "Amount": 499},
    }
    entry.update(extra)
    return entry


@pytest.fixture(scope="module")
def sandbox() -> Iterator[RunningSandbox]:
    """The Zoho emulator (and CleverTap's) seeded once for a test module."""
    running = start_sandbox(contacts=CONTACTS, seed=SEED)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def pool(sandbox: RunningSandbox) -> ContactPool:
    """The emulator's Contacts with a unique valid mobile, to hand out to tests."""
    zoho = sandbox.zoho_resource()
    contacts = zoho.read_records("Contacts", ["Mobile", "Email"]).records
    mobiles = normalize_phones(contacts["Mobile"], "IN", mobile_field=True)
    emails = normalize_emails(contacts["Email"])["email"]
    usable = mobiles["e164"].notna() & (mobiles["number_type"] == "mobile")
    unique = ~mobiles["e164"].duplicated(keep=False)
    people = [
        Person(contact_id=str(contact_id), identity=str(identity), email=email)
        for contact_id, identity, email in zip(
            contacts["id"][usable & unique],
            mobiles["e164"][usable & unique],
            emails[usable & unique].astype(object).where(emails.notna(), None),
            strict=True,
        )
    ]
    return ContactPool(people)


@pytest.fixture
def writeback(
    sandbox: RunningSandbox, pool: ContactPool, warehouse: WarehouseResource
) -> Iterator[Writeback]:
    """A receiver on a fresh warehouse (SQLite, and PostgreSQL when configured) that looks as
    the forward flow left it."""
    yield from _writeback(sandbox, pool, warehouse)


@pytest.fixture
def sqlite_writeback(
    sandbox: RunningSandbox, pool: ContactPool, sqlite_warehouse: WarehouseResource
) -> Iterator[Writeback]:
    """The same on SQLite only, for behaviour that does not depend on the database."""
    yield from _writeback(sandbox, pool, sqlite_warehouse)


def _writeback(
    sandbox: RunningSandbox, pool: ContactPool, warehouse: WarehouseResource
) -> Iterator[Writeback]:
    seed_forward_tables(warehouse, pool.people)
    clock = ReceiverClock()
    receiver = start_in_thread(create_webhook_app(warehouse, TOKEN, clock=clock))
    try:
        # In memory: a run on an on-disk test instance spends seconds writing its event log.
        yield Writeback(
            sandbox=sandbox,
            warehouse=warehouse,
            instance=dg.DagsterInstance.ephemeral(),
            receiver=receiver,
            pool=pool,
            clock=clock,
        )
    finally:
        receiver.stop()
        requests.post(f"{sandbox.zoho.url}/__sandbox/reset", timeout=30)


def seed_forward_tables(warehouse: WarehouseResource, people: list[Person]) -> None:
    """The tables the forward flow leaves: who was pushed under which identity."""
    now = datetime.now(UTC)
    warehouse.replace_table(
        PUSHED_PROFILES,
        pd.DataFrame(
            {
                "identity": [person.identity for person in people],
                "payload_hash": "seeded",
                "contact_id": [person.contact_id for person in people],
                "pushed_at": pd.Series([now] * len(people), dtype="datetime64[ns, UTC]"),
            }
        ),
        key=["identity"],
    )
    warehouse.replace_table(
        "contact_identities",
        pd.DataFrame(
            {
                "module": "Contacts",
                "zoho_id": [person.contact_id for person in people],
                "identity": [person.identity for person in people],
                "identity_kind": "phone",
                "mobile_e164": [person.identity for person in people],
                "email": pd.array([person.email for person in people], dtype="str"),
            }
        ),
        key=["module", "zoho_id"],
    )
