"""The webhook receiver over HTTP: what it stores, what it refuses, and that it stays up."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import requests

from ct_pipeline.sandbox.server import serving
from ct_pipeline.warehouse import WarehouseResource
from ct_pipeline.webhooks import (
    DELIVERIES_TABLE,
    INBOX_TABLE,
    WEBHOOK_PATH,
    WebhookConfigError,
    create_webhook_app,
    requeue_parked,
)
from ct_pipeline_tests.writeback.conftest import TOKEN

TEN_MB = 10 * 1024 * 1024
CHARGED = {
    "targetId": 1700000101,
    "key_values": {"event": "Charged", "PromoCode": "MT50"},
    "profiles": [
        {
            "identity": "+919812345670",
            "email": "asha.k@example.in",
            "objectId": "__g1",
            "profileData": {"Phone": "+919812345670", "crm_contact_id": "5545974000000100220"},
            "event_properties": {"event_time": 1772706600, "Amount": 499},
        },
        {"identity": "+919812345671", "event_properties": {"event_time": 1772706601}},
    ],
}


@dataclass
class Receiver:
    url: str
    warehouse: WarehouseResource

    def post(self, token: str | None = TOKEN, **kwargs) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return requests.post(self.url, headers=headers, timeout=30, **kwargs)

    def stored(self) -> tuple[int, int]:
        """Rows in the delivery and inbox tables."""
        counts = []
        for table in (DELIVERIES_TABLE, INBOX_TABLE):
            frame = self.warehouse.read_sql(f"SELECT COUNT(*) AS n FROM {table}")
            counts.append(int(frame["n"].iloc[0]))
        return counts[0], counts[1]


@pytest.fixture
def receiver(warehouse: WarehouseResource) -> Iterator[Receiver]:
    """A receiver storing into each test warehouse (SQLite, and PostgreSQL when configured)."""
    yield from _serve(warehouse)


@pytest.fixture
def sqlite_receiver(sqlite_warehouse: WarehouseResource) -> Iterator[Receiver]:
    """A receiver on SQLite, for refusals, which never reach the database."""
    yield from _serve(sqlite_warehouse)


def _serve(warehouse: WarehouseResource) -> Iterator[Receiver]:
    with serving(create_webhook_app(warehouse, TOKEN, max_body_bytes=1024 * 1024)) as server:
        yield Receiver(url=f"{server.url}{WEBHOOK_PATH}", warehouse=warehouse)


def test_a_valid_delivery_is_stored_with_one_row_per_event_before_the_200(receiver: Receiver):
    response = receiver.post(json=CHARGED)

    assert response.status_code == 200
    assert response.json()["events"] == 2
    assert receiver.stored() == (1, 2)
    inbox = receiver.warehouse.read_table(INBOX_TABLE)
    assert set(inbox["status"]) == {"received"}
    assert set(inbox["event_name"]) == {"Charged"}
    assert inbox["crm_contact_id"].dropna().tolist() == ["5545974000000100220"]


def test_the_basic_auth_password_is_accepted_like_the_bearer_token(receiver: Receiver):
    credentials = base64.b64encode(f"clevertap:{TOKEN}".encode()).decode()

    response = receiver.post(
        token=None, json=CHARGED, headers={"Authorization": f"Basic {credentials}"}
    )

    assert response.status_code == 200
    assert receiver.stored() == (1, 2)


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer wrong-secret-0123456789",
        f"Bearer {TOKEN}x",
        "Basic " + base64.b64encode(b"clevertap:not-the-secret").decode(),
        "Basic " + base64.b64encode(TOKEN.encode()).decode(),
        "Basic !!!not-base64",
        TOKEN,
    ],
    ids=["missing", "wrong", "longer", "basic-wrong", "basic-no-colon", "basic-bad", "no-scheme"],
)
def test_a_missing_or_wrong_secret_gets_401_and_stores_nothing(
    sqlite_receiver: Receiver, authorization: str | None
):
    headers = {"Authorization": authorization} if authorization else {}

    response = sqlite_receiver.post(token=None, json=CHARGED, headers=headers)

    assert response.status_code == 401
    assert "WWW-Authenticate" in response.headers
    assert sqlite_receiver.stored() == (0, 0)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"profiles": [', "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[1, 2]", "JSON object"),
        (b'{"key_values": {"event": "Charged"}}', "profiles is missing"),
        (b'{"key_values": {"event": "Charged"}, "profiles": []}', "profiles is empty"),
        (b'{"key_values": {"event": "Charged"}, "profiles": ["+91"]}', "profiles[0]"),
        (b'{"profiles": [{"identity": "x"}]}', "key_values.event"),
        (b'{"key_values": [1], "profiles": [{"identity": "x"}]}', "key_values"),
        (
            b'{"key_values": {"event": "Charged"}, '
            b'"profiles": [{"identity": "x", "event_properties": {"event_time": "soon"}}]}',
            "not a time",
        ),
        (b'{"key_values": {"event": "Charged"}, "profiles": [{"identity": NaN}]}', "NaN"),
        (b"[" * 100_000 + b"]" * 100_000, "nested"),
    ],
    ids=[
        "truncated",
        "not-utf8",
        "array",
        "no-profiles",
        "empty-profiles",
        "profile-not-object",
        "no-event-name",
        "key-values-not-object",
        "bad-event-time",
        "nan",
        "deep-nesting",
    ],
)
def test_a_malformed_body_gets_400_with_a_reason_and_stores_nothing(
    sqlite_receiver: Receiver, body: bytes, reason: str
):
    response = sqlite_receiver.post(data=body)

    assert response.status_code == 400
    assert reason in response.json()["error"]
    assert sqlite_receiver.stored() == (0, 0)


def test_a_10_mb_body_gets_413_unread_and_the_server_keeps_serving(receiver: Receiver):
    huge = b'{"profiles": [' + b'{"identity": "x"},' * (TEN_MB // 18) + b"{}]}"

    declared = receiver.post(data=huge)
    streamed = receiver.post(data=iter([huge[i : i + 65536] for i in range(0, len(huge), 65536)]))
    afterwards = receiver.post(json=CHARGED)

    assert declared.status_code == 413
    assert streamed.status_code == 413
    assert "larger than" in declared.json()["error"]
    assert afterwards.status_code == 200
    assert receiver.stored() == (1, 2)


def test_the_test_payload_with_capitalised_keys_gets_200_and_creates_no_event(
    receiver: Receiver,
):
    test_payload = {
        "is_test": True,
        "targetId": 1234,
        "key_values": {"key": "value"},
        "profiles": [{"Identity": "UserId", "Email": "someone@example.com", "push_token": "T"}],
    }

    response = receiver.post(json=test_payload)

    assert response.status_code == 200
    assert response.json()["test"] is True
    assert receiver.stored() == (1, 0)


def test_capitalised_profile_keys_are_read_like_lower_case_ones(receiver: Receiver):
    body = {
        "key_values": {"Event": "App Uninstalled"},
        "Profiles": [{"Identity": "+919812345672", "Email": "Ravi@Example.in", "ProfileData": {}}],
    }

    response = receiver.post(json=body)

    assert response.status_code == 200
    row = receiver.warehouse.read_table(INBOX_TABLE).iloc[0]
    assert (row["event_name"], row["identity"]) == ("App Uninstalled", "+919812345672")
    assert row["email"] == "Ravi@Example.in"


def test_a_repeated_delivery_adds_no_second_event(receiver: Receiver):
    first = receiver.post(json=CHARGED)
    second = receiver.post(json=CHARGED)

    assert (first.json()["new_events"], second.json()["new_events"]) == (2, 0)
    assert second.json()["duplicates"] == 2
    assert receiver.stored() == (2, 2)


def test_the_health_route_answers_without_credentials(receiver: Receiver):
    response = requests.get(receiver.url.replace(WEBHOOK_PATH, "/health"), timeout=30)

    assert response.status_code == 200


@pytest.mark.parametrize("token", ["", "short"])
def test_the_receiver_refuses_to_start_without_a_strong_secret(
    sqlite_warehouse: WarehouseResource, token: str
):
    with pytest.raises(WebhookConfigError, match="CT_WEBHOOK_TOKEN"):
        create_webhook_app(sqlite_warehouse, token)


def test_requeue_sends_parked_events_back_to_be_matched(receiver: Receiver):
    receiver.post(json=CHARGED)
    with receiver.warehouse.transaction() as tx:
        tx.execute(f"UPDATE {INBOX_TABLE} SET status = 'parked', reason = 'no_matching_contact'")

    requeued = requeue_parked(receiver.warehouse, reason="no_matching_contact")

    inbox = receiver.warehouse.read_table(INBOX_TABLE)
    assert requeued == 2
    assert set(inbox["status"]) == {"received"}
    assert inbox["reason"].isna().all()


@contextmanager
def deliveries_refused(warehouse: WarehouseResource) -> Iterator[None]:
    """The database refuses every new delivery row meanwhile, as a full disk would."""
    postgres = warehouse.dialect == "postgresql"
    with warehouse.transaction() as tx:
        if postgres:
            tx.execute(
                "CREATE FUNCTION refuse_delivery() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'could not extend file: No space left on device'; END $$ "
                "LANGUAGE plpgsql"
            )
            tx.execute(
                f"CREATE TRIGGER refuse_delivery BEFORE INSERT ON {DELIVERIES_TABLE} "
                "FOR EACH ROW EXECUTE FUNCTION refuse_delivery()"
            )
        else:
            tx.execute(
                f"CREATE TRIGGER refuse_delivery BEFORE INSERT ON {DELIVERIES_TABLE} "
                "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
            )
    try:
        yield
    finally:
        with warehouse.transaction() as tx:
            tx.execute(
                f"DROP TRIGGER refuse_delivery{f' ON {DELIVERIES_TABLE}' if postgres else ''}"
            )


def test_a_storage_failure_gets_503_stores_nothing_and_the_server_keeps_serving(
    receiver: Receiver,
):
    with deliveries_refused(receiver.warehouse):
        refused = receiver.post(json=CHARGED)
        stored_meanwhile = receiver.stored()
    afterwards = receiver.post(json=CHARGED)

    assert refused.status_code == 503
    assert "send it again later" in refused.json()["error"]
    # The inbox rows are written first: the one transaction took them back with the delivery.
    assert stored_meanwhile == (0, 0)
    assert afterwards.status_code == 200
    assert receiver.stored() == (1, 2)


def test_a_nul_in_a_value_is_stored_visibly_not_refused_by_the_database(receiver: Receiver):
    body = {
        "key_values": {"event": "Charged"},
        "profiles": [
            {"identity": "+91981234\u00005670", "event_properties": {"note": "a\u0000b"}},
        ],
    }

    response = receiver.post(json=body)

    assert response.status_code == 200
    assert receiver.stored() == (1, 1)
    row = receiver.warehouse.read_table(INBOX_TABLE).iloc[0]
    assert row["identity"] == "+91981234\ufffd5670"
    assert json.loads(row["properties"]) == {"note": "a\u0000b"}
    stored_body = receiver.warehouse.read_table(DELIVERIES_TABLE)["body"].iloc[0]
    assert json.loads(stored_body) == body
