"""A read of more than 100,000 records at Zoho's own page-token cap, over HTTP.

Other tests shrink the cap to page past it quickly; here the emulator and the client keep
Zoho's 100,000, so the read needs a second If-Modified-Since window to reach every record.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ct_pipeline.sandbox.server import start_in_thread
from ct_pipeline.sandbox.synthetic import SyntheticCrm, generate_crm
from ct_pipeline.sandbox.zoho_emulator import create_zoho_app
from ct_pipeline.zoho.http import clear_token_cache
from ct_pipeline.zoho.records import PAGE_TOKEN_CAP, PER_PAGE
from ct_pipeline_tests.zoho.conftest import Sandbox

CONTACTS = 101_000


@pytest.fixture(scope="module")
def large_crm() -> SyntheticCrm:
    """Just over 100,000 contacts (about 11 s to generate)."""
    return generate_crm(CONTACTS, seed=5)


@pytest.fixture(scope="module")
def large_sandbox(large_crm: SyntheticCrm) -> Iterator[Sandbox]:
    """An emulator with Zoho's documented limits, the 100,000-record cap among them."""
    server = start_in_thread(create_zoho_app(large_crm))
    yield Sandbox(server.url)
    server.stop()


@pytest.fixture(autouse=True)
def _fresh_tokens() -> None:
    clear_token_cache()


def _records_read(sandbox: Sandbox, **client: Any):
    zoho = sandbox.client(**client)
    before = sandbox.stats()
    read = zoho.read_records("Contacts", ["Last_Name", "Modified_Time"])
    after = sandbox.stats()
    refused = after["statuses"].get("400", 0) - before["statuses"].get("400", 0)
    return read, zoho.usage()["calls"]["records"], refused


def test_a_read_past_the_default_page_token_cap_returns_every_record_once(large_sandbox, large_crm):
    read, pages, refused = _records_read(large_sandbox)

    assert len(read.records) == CONTACTS > PAGE_TOKEN_CAP
    assert set(read.records["id"]) == set(large_crm.contacts["id"])
    # The client started its second window at the cap, before Zoho would have refused.
    assert refused == 0
    assert pages > CONTACTS // PER_PAGE + 1


def test_the_servers_refusal_at_the_cap_starts_the_next_window(large_sandbox, large_crm):
    # A client that does not know the cap meets PAGINATION_LIMIT_EXCEEDED at record 100,000.
    read, _, refused = _records_read(large_sandbox, page_token_cap=2 * PAGE_TOKEN_CAP)

    assert refused == 1
    assert len(read.records) == CONTACTS
    assert set(read.records["id"]) == set(large_crm.contacts["id"])
