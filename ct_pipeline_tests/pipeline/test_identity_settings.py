"""The identity settings reach the pipeline: other phone fields, and the canonical-record rule."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator

import dagster as dg
import pandas as pd
import pytest

from ct_pipeline.assets.common import FULL_DERIVATION_TAG
from ct_pipeline.sandbox.launch import start_sandbox
from ct_pipeline.sandbox.synthetic import SyntheticCrm
from ct_pipeline_tests.pipeline.conftest import Pipeline
from ct_pipeline_tests.pipeline.test_incremental_derivation import (
    assert_same_tables,
    derived_tables,
)

# A custom Zoho field of Contacts only; people whose mobile is only there.
HOME_PHONE = "Home_Phone"
HOME_PHONE_ONLY = 6
HOME_PHONE_CONFIG = "identity: {order: [phone], phone_fields: [Mobile, Home_Phone]}\n"


def home_number(index: int) -> tuple[str, str]:
    """A mobile number as typed into Home_Phone, and its E.164 form."""
    return f"097401 1{index:04d}", f"+9197401{index + 10000:05d}"


@pytest.fixture
def home_phone_crm(synthetic_crm: SyntheticCrm) -> SyntheticCrm:
    """The synthetic CRM with a Home_Phone field on Contacts: the first contacts have no other
    phone or email, and the first open Lead has only the first of those numbers, as its
    Mobile."""
    crm = copy.deepcopy(synthetic_crm)
    contacts = crm.contacts.assign(**{HOME_PHONE: pd.Series(None, dtype=object)})
    for row in range(HOME_PHONE_ONLY):
        contacts.loc[row, ["Mobile", "Phone", "Email", "Secondary_Email"]] = None
        contacts.loc[row, HOME_PHONE] = home_number(row)[0]
    leads = crm.leads.copy()
    first = first_open_lead(crm)
    leads.loc[first, ["Phone", "Email"]] = None
    leads.loc[first, "Mobile"] = "+91 97401 10000"
    return dataclasses.replace(crm, contacts=contacts, leads=leads)


def first_open_lead(crm: SyntheticCrm) -> int:
    """The row of the first Lead not converted (Zoho leaves converted Leads out of reads)."""
    return int(crm.leads.index[~crm.leads["Converted__s"].astype(bool)][0])


@pytest.fixture
def home_phone_pipeline(warehouse, home_phone_crm: SyntheticCrm, tmp_path) -> Iterator[Pipeline]:
    """Both emulators on the Home_Phone CRM, with identities from Mobile then Home_Phone."""
    config = tmp_path / "sync.yaml"
    config.write_text(HOME_PHONE_CONFIG)
    sandbox = start_sandbox(crm=home_phone_crm)
    try:
        with dg.DagsterInstance.ephemeral() as instance:
            yield Pipeline(sandbox, warehouse, instance, config_path=str(config))
    finally:
        sandbox.stop()


def test_identities_come_from_a_configured_field_beyond_mobile_and_phone(
    home_phone_pipeline: Pipeline, home_phone_crm: SyntheticCrm
):
    pipeline = home_phone_pipeline

    assert pipeline.run("nightly_full_sync").success

    ids = home_phone_crm.contacts["id"].astype(str).iloc[:HOME_PHONE_ONLY].tolist()
    identities = pipeline.warehouse.read_table("contact_identities").set_index("zoho_id")
    people = identities.loc[ids]
    expected = [home_number(position)[1] for position in range(HOME_PHONE_ONLY)]
    assert people["home_phone_e164"].tolist() == expected
    assert people["identity"].tolist() == expected
    assert set(people["identity_source"]) == {HOME_PHONE}
    pushed = pipeline.clevertap("GET", "profiles", identity=expected[1])["profiles"]
    assert len(pushed) == 1

    # The Lead with that number as its Mobile is grouped with the Contact through Home_Phone.
    members = pipeline.warehouse.read_table("duplicate_profiles").set_index("zoho_id")
    lead = str(home_phone_crm.leads.loc[first_open_lead(home_phone_crm), "id"])
    assert members.loc[lead, "group_id"] == members.loc[ids[0], "group_id"]
    assert members.loc[ids[0], "is_canonical"]
    links = pipeline.warehouse.read_table("duplicate_profile_links")
    assert "home_phone_e164" in set(links.loc[links["record_id"] == ids[0], "field"])


def test_an_incremental_run_follows_the_configured_field_as_a_full_recompute_does(
    home_phone_pipeline: Pipeline, home_phone_crm: SyntheticCrm
):
    pipeline = home_phone_pipeline
    assert pipeline.run("nightly_full_sync").success
    ids = home_phone_crm.contacts["id"].astype(str).tolist()
    pipeline.zoho(
        "POST",
        "records/Contacts",
        [
            # Takes another's Home_Phone: the two become one group.
            {"id": ids[1], HOME_PHONE: home_number(2)[0]},
            # Drops it: no identity left.
            {"id": ids[3], HOME_PHONE: None},
            # A new Contact reachable only through Home_Phone.
            {"Last_Name": "Homebound", HOME_PHONE: home_number(90)[0]},
        ],
    )

    assert pipeline.run("incremental_sync").success
    after_incremental = derived_tables(pipeline)
    identities = after_incremental["contact_identities"].set_index("zoho_id")
    assert pd.isna(identities.loc[ids[3], "identity"])
    assert home_number(90)[1] in set(identities["identity"])
    members = after_incremental["duplicate_profiles"].set_index("zoho_id")
    assert members.loc[ids[1], "group_id"] == members.loc[ids[2], "group_id"]

    assert pipeline.run("nightly_full_sync", tags={FULL_DERIVATION_TAG: "true"}).success
    assert_same_tables(derived_tables(pipeline), after_incremental)


def test_a_configured_identity_field_missing_in_zoho_stops_the_push_naming_it(
    pipeline: Pipeline, tmp_path
):
    config = tmp_path / "sync.yaml"
    config.write_text("identity: {phone_fields: [Mobile, WhatsApp_Number]}\n")
    pipeline.config_path = str(config)

    result = pipeline.run("nightly_full_sync")

    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    assert not result.success
    assert [e.check_name for e in failed] == ["mapped_fields_present"]
    assert "WhatsApp_Number" in failed[0].description
    assert pipeline.upload_requests() == 0


def test_the_configured_canonical_rule_picks_each_groups_record(pipeline: Pipeline, tmp_path):
    config = tmp_path / "sync.yaml"
    config.write_text(
        "zoho: {profiles_from_leads: true}\n"
        "identity: {canonical_order: [modified], module_priority: [Leads, Contacts]}\n"
    )
    pipeline.config_path = str(config)

    assert pipeline.run("nightly_full_sync").success

    members = pipeline.warehouse.read_table("duplicate_profiles")
    identities = pipeline.warehouse.read_table("contact_identities")
    grouped = members[members["group_status"] == "merged"].merge(
        identities[["module", "zoho_id", "modified_time"]], on=["module", "zoho_id"]
    )
    grouped["modified_time"] = pd.to_datetime(grouped["modified_time"], utc=True)
    latest = grouped.sort_values(["modified_time", "zoho_id"], ascending=[False, True])
    expected = latest.groupby("group_id")["zoho_id"].first()
    canonical = grouped[grouped["is_canonical"]].set_index("group_id")["zoho_id"]
    assert grouped["group_id"].nunique() > 10
    assert canonical.sort_index().tolist() == expected.sort_index().tolist()
    # Under the default rule a Contact wins whenever the group has one; here recency does.
    won_by_lead = grouped[grouped["is_canonical"] & (grouped["module"] == "Leads")]
    assert len(won_by_lead) > 0
