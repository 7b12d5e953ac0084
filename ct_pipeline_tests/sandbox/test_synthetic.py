"""Tests for the synthetic Zoho CRM generator: contract, determinism, realism and mess rates.

Assertion messages carry counts and kind names only: generated phones and emails look like
personal data and must not show up in test output.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import phonenumbers
import pytest
from email_validator import EmailNotValidError, validate_email

from ct_pipeline.sandbox.synthetic import (
    CASE_PRIORITIES,
    CLOSED_STAGES,
    LOST_STAGES,
    MESS_RATES,
    MODULES,
    OPEN_CASE_STATUSES,
    PIPELINES,
    SyntheticCrm,
    generate_crm,
)
from ct_pipeline.sandbox.synthetic_mess import (
    CLEAN_MOBILE_KINDS,
    GARBAGE_PHONES,
    PERSON_MOBILE_KINDS,
    PLACEHOLDER_EMAILS,
    PLACEHOLDER_PHONES,
    ROLE_MAILBOXES,
    TYPO_DOMAINS,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CONTACTS = 2_000

CONTACT_COLUMNS = [
    "id",
    "Salutation",
    "First_Name",
    "Last_Name",
    "Full_Name",
    "Email",
    "Secondary_Email",
    "Phone",
    "Mobile",
    "Mailing_Street",
    "Mailing_City",
    "Mailing_State",
    "Mailing_Zip",
    "Mailing_Country",
    "Date_of_Birth",
    "Lead_Source",
    "Account_Type",
    "Subscription_Plan",
    "Subscription_Value_INR",
    "Customer_Tier",
    "KYC_Status",
    "Lifecycle_Stage",
    "Subscription_Status",
    "App_Uninstalled",
    "Last_Purchase_Date",
    "Email_Opt_Out",
    "Owner.id",
    "Owner.name",
    "Owner.email",
    "Account_Name.id",
    "Account_Name.name",
    "Created_Time",
    "Modified_Time",
]
LEAD_COLUMNS = [
    "id",
    "First_Name",
    "Last_Name",
    "Full_Name",
    "Email",
    "Phone",
    "Mobile",
    "Company",
    "Lead_Status",
    "Lead_Source",
    "City",
    "State",
    "Country",
    "Converted__s",
    "Owner.id",
    "Owner.name",
    "Owner.email",
    "Created_Time",
    "Modified_Time",
]
DEAL_COLUMNS = [
    "id",
    "Deal_Name",
    "Pipeline",
    "Stage",
    "Amount",
    "Closing_Date",
    "Probability",
    "Product_Category",
    "Type",
    "Lead_Source",
    "Contact_Name.id",
    "Contact_Name.name",
    "Account_Name.id",
    "Account_Name.name",
    "Owner.id",
    "Owner.name",
    "Owner.email",
    "Created_Time",
    "Modified_Time",
]
CASE_COLUMNS = [
    "id",
    "Case_Number",
    "Subject",
    "Status",
    "Priority",
    "Case_Origin",
    "Type",
    "Related_To.id",
    "Related_To.name",
    "Owner.id",
    "Owner.name",
    "Owner.email",
    "Created_Time",
    "Modified_Time",
]
SERVED_COLUMNS = {
    "Contacts": CONTACT_COLUMNS,
    "Leads": LEAD_COLUMNS,
    "Deals": DEAL_COLUMNS,
    "Cases": CASE_COLUMNS,
}
BOOL_COLUMNS = {"App_Uninstalled", "Email_Opt_Out", "Converted__s"}
FLOAT_COLUMNS = {"Subscription_Value_INR", "Amount", "Probability"}
TIME_COLUMNS = {"Created_Time", "Modified_Time"}
DATE_COLUMNS = {"Date_of_Birth", "Closing_Date", "Last_Purchase_Date"}

# What each Mobile kind must look like once written; checked against every value of the kind.
MOBILE_PATTERNS = {
    "plain": r"[6-9]\d{9}",
    "e164": r"\+91[6-9]\d{9}",
    "plus91_spaced": r"\+91 [6-9]\d{4} \d{5}",
    "spaced": r"[6-9]\d{4} \d{5}",
    "trunk_dashed": r"0 ?[6-9]\d{4}[- ]?\d{5}",
    "country_code_no_plus": r"91[ -]?[6-9]\d{4} ?\d{5}",
    "intl_prefix_00": r"0091[ -]?[6-9]\d{4} ?\d{5}",
    "brackets": r"\(\+?91\) ?[6-9]\d{4}[- ]?\d{5}",
    "dots": r"(\+91\.)?[6-9][\d.]{10,11}",
    "extension": r"[+\d ]{10,15} (ext\. |x|extn )\d{1,3}",
    "full_width": r"[＋０-９ ]{10,14}",
    "landline": r"[(+\d][\d() +-]{9,16}",
    "foreign_plus": r"\+(971|1|44|65) [\d ]{7,14}",
    "foreign_no_plus": r"\d{10,12}",
    "truncated": r"[6-9]\d{8}",
}


@pytest.fixture(scope="module")
def crm() -> SyntheticCrm:
    return generate_crm(CONTACTS, seed=7, now=NOW)


@pytest.fixture(scope="module")
def large_crm() -> SyntheticCrm:
    """Big enough that rare kinds (0.2%) are seen a few times in the Leads alone."""
    return generate_crm(8_000, seed=11, now=NOW)


def _india_mobile_e164(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        number = phonenumbers.parse(value, "IN")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number) or number.country_code != 91:
        return None
    if phonenumbers.number_type(number) != phonenumbers.PhoneNumberType.MOBILE:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _is_valid_email(value: str) -> bool:
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


def _tolerance(rate: float, n: int) -> float:
    return 5 * np.sqrt(rate * (1 - rate) / n) + 2 / n


# Contract ---------------------------------------------------------------------------------


def test_same_seed_gives_identical_frames() -> None:
    first = generate_crm(300, seed=3, now=NOW)
    second = generate_crm(300, seed=3, now=NOW)
    for name in MODULES:
        pd.testing.assert_frame_equal(first.module(name), second.module(name))
    pd.testing.assert_frame_equal(first.users, second.users)


def test_another_seed_gives_other_people() -> None:
    first = generate_crm(300, seed=3, now=NOW)
    other = generate_crm(300, seed=4, now=NOW)
    assert not first.contacts["Full_Name"].equals(other.contacts["Full_Name"])


def test_repr_shows_sizes_not_records(crm: SyntheticCrm) -> None:
    text = repr(crm)
    assert f"contacts={CONTACTS}" in text
    assert "@" not in text and len(text) < 200


def test_module_returns_each_frame_and_rejects_unknown_names(crm: SyntheticCrm) -> None:
    assert crm.module("Contacts") is crm.contacts
    assert crm.module("Cases") is crm.cases
    with pytest.raises(ValueError, match="Accounts"):
        crm.module("Accounts")


@pytest.mark.parametrize("module", MODULES)
def test_served_columns_are_the_zoho_field_api_names(crm: SyntheticCrm, module: str) -> None:
    served = [c for c in crm.module(module).columns if not c.startswith("_")]
    assert served == SERVED_COLUMNS[module]


def test_users_have_id_name_and_company_email(crm: SyntheticCrm) -> None:
    assert list(crm.users.columns) == ["id", "name", "email"]
    assert len(crm.users) == 25
    assert crm.users["email"].str.fullmatch(r"[a-z]+(\.[a-z]+)+@zylker\.in").all()
    assert crm.users["name"].str.fullmatch(r"[A-Z][a-z]+( [A-Z][a-z]+)+").all()


@pytest.mark.parametrize("module", MODULES)
def test_column_dtypes_follow_the_contract(crm: SyntheticCrm, module: str) -> None:
    frame = crm.module(module)
    for column in SERVED_COLUMNS[module]:
        dtype = frame[column].dtype
        if column in BOOL_COLUMNS:
            assert pd.api.types.is_bool_dtype(dtype), column
        elif column in FLOAT_COLUMNS:
            assert dtype == np.float64, column
        elif column in TIME_COLUMNS:
            assert isinstance(dtype, pd.DatetimeTZDtype) and str(dtype.tz) == "UTC", column
        else:
            assert isinstance(dtype, pd.StringDtype), column


def test_ids_are_unique_19_digit_strings_across_modules(crm: SyntheticCrm) -> None:
    ids = pd.concat([crm.module(m)["id"] for m in MODULES] + [crm.users["id"]])
    assert ids.str.fullmatch(r"[1-9]\d{18}").all()
    assert ids.is_unique


def test_times_are_ordered_and_not_after_now(crm: SyntheticCrm) -> None:
    now = pd.Timestamp(NOW)
    for module in MODULES:
        frame = crm.module(module)
        assert frame["Created_Time"].notna().all() and frame["Modified_Time"].notna().all()
        assert (frame["Modified_Time"] >= frame["Created_Time"]).all(), module
        assert (frame["Modified_Time"] <= now).all(), module


def test_created_times_spread_over_about_two_years(crm: SyntheticCrm) -> None:
    created = crm.contacts["Created_Time"]
    assert pd.Timestamp(NOW) - created.min() > pd.Timedelta(days=650)
    assert pd.Timestamp(NOW) - created.max() < pd.Timedelta(days=30)


def test_many_records_share_a_modified_second(crm: SyntheticCrm) -> None:
    sizes = crm.contacts.groupby("Modified_Time").size()
    assert sizes.max() >= 10
    assert (sizes[sizes > 1].sum() / len(crm.contacts)) > 0.1


def test_date_fields_are_iso_dates_or_null(crm: SyntheticCrm) -> None:
    for module in MODULES:
        frame = crm.module(module)
        for column in DATE_COLUMNS & set(frame.columns):
            values = frame[column].dropna()
            assert len(values) > 0, column
            assert values.str.fullmatch(r"\d{4}-\d{2}-\d{2}").all(), column
            assert pd.to_datetime(values, format="%Y-%m-%d").notna().all(), column


def test_a_crm_of_no_contacts_has_empty_modules() -> None:
    empty = generate_crm(0, seed=1, now=NOW)
    for module in MODULES:
        assert empty.module(module).empty
        assert [c for c in empty.module(module).columns if not c.startswith("_")] == (
            SERVED_COLUMNS[module]
        )


def test_default_now_is_the_start_of_the_current_utc_day() -> None:
    midnight = pd.Timestamp.now(tz="UTC").normalize()
    frame = generate_crm(200, seed=5).contacts
    assert frame["Modified_Time"].max() <= midnight + pd.Timedelta(days=1)
    assert frame["Created_Time"].max() > midnight - pd.Timedelta(days=30)


def test_each_field_kind_rates_add_up_to_one() -> None:
    for field in ("mobile", "phone", "email"):
        assert sum(MESS_RATES[field].values()) == pytest.approx(1.0), field


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        generate_crm(10, now=datetime(2026, 1, 1))


# Lookups ----------------------------------------------------------------------------------


def test_deal_and_case_lookups_point_at_existing_contacts(crm: SyntheticCrm) -> None:
    names = crm.contacts.set_index("id")["Full_Name"]
    for frame, field in ((crm.deals, "Contact_Name"), (crm.cases, "Related_To")):
        ids = frame[f"{field}.id"]
        assert ids.notna().all()
        assert ids.isin(names.index).all()
        assert (frame[f"{field}.name"].to_numpy() == names.loc[ids].to_numpy()).all()


def test_owners_are_users_with_matching_name_and_email(crm: SyntheticCrm) -> None:
    users = crm.users.set_index("id")
    for module in MODULES:
        frame = crm.module(module)
        assert frame["Owner.id"].isin(users.index).all(), module
        owner = users.loc[frame["Owner.id"]]
        assert (frame["Owner.name"].to_numpy() == owner["name"].to_numpy()).all(), module
        assert (frame["Owner.email"].to_numpy() == owner["email"].to_numpy()).all(), module


def test_null_account_lookups_are_null_in_both_columns(crm: SyntheticCrm) -> None:
    for frame in (crm.contacts, crm.deals):
        assert (frame["Account_Name.id"].isna() == frame["Account_Name.name"].isna()).all()
        assert frame["Account_Name.id"].notna().any()
        assert frame["Account_Name.id"].isna().any()


def test_business_contacts_mostly_belong_to_an_account(crm: SyntheticCrm) -> None:
    business = crm.contacts[crm.contacts["Account_Type"] == "Business"]
    individual = crm.contacts[crm.contacts["Account_Type"] == "Individual"]
    assert business["Account_Name.id"].notna().mean() > 0.7
    assert individual["Account_Name.id"].notna().mean() < 0.1


# Deals and Cases --------------------------------------------------------------------------


def test_deal_stages_belong_to_their_pipeline(crm: SyntheticCrm) -> None:
    for pipeline, deals in crm.deals.groupby("Pipeline"):
        allowed = set(PIPELINES[pipeline]) | set(LOST_STAGES)
        assert set(deals["Stage"]) <= allowed, pipeline
        assert set(deals["Stage"]) >= set(PIPELINES[pipeline]), pipeline


def test_every_pipeline_has_deals_and_lost_deals(crm: SyntheticCrm) -> None:
    assert set(crm.deals["Pipeline"]) == set(PIPELINES)
    assert crm.deals["Stage"].isin(LOST_STAGES).any()
    assert set(CLOSED_STAGES) == {stages[-1] for stages in PIPELINES.values()} | set(LOST_STAGES)


def test_won_and_lost_probabilities_are_100_and_0(crm: SyntheticCrm) -> None:
    won = crm.deals["Stage"].isin([stages[-1] for stages in PIPELINES.values()])
    lost = crm.deals["Stage"].isin(LOST_STAGES)
    assert (crm.deals.loc[won, "Probability"] == 100).all()
    assert (crm.deals.loc[lost, "Probability"] == 0).all()
    open_ = crm.deals.loc[~won & ~lost, "Probability"]
    assert open_.between(1, 99).all()


def test_deal_amounts_are_realistic_rupees_per_pipeline(crm: SyntheticCrm) -> None:
    median = crm.deals.groupby("Pipeline")["Amount"].median()
    assert 100_000 <= median["Personal Loan"] <= 400_000
    assert 20_000 <= median["Edtech Enrolment"] <= 100_000
    assert 500 <= median["D2C Order"] <= 5_000
    assert crm.deals["Amount"].isna().mean() < 0.05


def test_product_categories_differ_by_pipeline(crm: SyntheticCrm) -> None:
    categories = crm.deals.groupby("Pipeline")["Product_Category"].agg(set)
    pipelines = list(categories.index)
    for i, left in enumerate(pipelines):
        for right in pipelines[i + 1 :]:
            assert not categories[left] & categories[right]


def test_contacts_have_zero_to_three_deals(crm: SyntheticCrm) -> None:
    per_contact = crm.deals.groupby("Contact_Name.id").size()
    assert per_contact.max() <= 3
    with_deals = crm.contacts["id"].isin(per_contact.index)
    assert 0.4 < with_deals.mean() < 0.7


def test_cases_are_open_and_closed_at_every_priority(crm: SyntheticCrm) -> None:
    cases = crm.cases
    assert set(cases["Status"]) == set(OPEN_CASE_STATUSES) | {"Closed"}
    assert set(cases["Priority"]) == set(CASE_PRIORITIES)
    open_ = cases["Status"].isin(OPEN_CASE_STATUSES)
    for priority in CASE_PRIORITIES:
        assert (open_ & (cases["Priority"] == priority)).any(), priority
        assert (~open_ & (cases["Priority"] == priority)).any(), priority
    assert 0.2 < len(cases) / len(crm.contacts) < 0.4


def test_case_numbers_are_unique(crm: SyntheticCrm) -> None:
    assert crm.cases["Case_Number"].is_unique


# Custom fields ----------------------------------------------------------------------------


def test_indian_app_custom_fields_hold_their_values(crm: SyntheticCrm) -> None:
    contacts = crm.contacts
    assert "VIP" in set(contacts["Customer_Tier"])
    assert set(contacts["KYC_Status"].dropna()) == {"Pending", "Verified", "Rejected"}
    assert set(contacts["Account_Type"]) == {"Individual", "Business", "Student"}
    assert set(contacts["Subscription_Plan"]) == {"Free", "Silver", "Gold", "Platinum"}
    free = contacts["Subscription_Plan"] == "Free"
    assert (contacts.loc[free, "Subscription_Value_INR"].dropna() == 0).all()
    assert (contacts.loc[~free, "Subscription_Value_INR"].dropna() > 0).all()
    assert contacts["App_Uninstalled"].any() and not contacts["App_Uninstalled"].all()
    assert contacts["Lifecycle_Stage"].nunique() >= 4
    assert contacts["Subscription_Status"].nunique() >= 4


def test_vip_customers_are_on_the_top_plans(crm: SyntheticCrm) -> None:
    vip = crm.contacts[crm.contacts["Customer_Tier"] == "VIP"]
    assert vip["Subscription_Plan"].isin(["Gold", "Platinum"]).all()


def test_addresses_are_indian(crm: SyntheticCrm) -> None:
    zips = crm.contacts["Mailing_Zip"].dropna()
    assert zips.str.fullmatch(r"[1-8]\d{5}").all()
    assert crm.contacts["Mailing_Country"].value_counts().index[0] == "India"


# Phones -----------------------------------------------------------------------------------


def test_mobile_kinds_appear_at_their_documented_rates(large_crm: SyntheticCrm) -> None:
    # Leads only: split duplicate Contacts override kinds on purpose.
    kinds = large_crm.leads["_mobile_kind"]
    observed = kinds.value_counts(normalize=True)
    for kind, rate in MESS_RATES["mobile"].items():
        gap = abs(observed.get(kind, 0.0) - rate)
        assert gap <= _tolerance(rate, len(kinds)), kind


def test_phone_kinds_appear_at_their_documented_rates(large_crm: SyntheticCrm) -> None:
    kinds = large_crm.leads["_phone_kind"]
    observed = kinds.value_counts(normalize=True)
    for kind, rate in MESS_RATES["phone"].items():
        gap = abs(observed.get(kind, 0.0) - rate)
        assert gap <= _tolerance(rate, len(kinds)), kind


def test_phone_field_holds_landlines_mobiles_and_shared_lines(crm: SyntheticCrm) -> None:
    frame = pd.concat([crm.contacts, crm.leads])
    kind = frame["_phone_kind"]
    assert frame.loc[kind == "empty", "Phone"].isna().all()
    fixed = phonenumbers.PhoneNumberType.FIXED_LINE
    landlines = frame.loc[kind == "landline", "Phone"]
    not_fixed = sum(
        1 for v in landlines if phonenumbers.number_type(phonenumbers.parse(v, "IN")) != fixed
    )
    assert not_fixed == 0, f"{not_fixed} of {len(landlines)} landlines are not fixed lines"
    own = frame[kind.isin(["plain", "spaced", "e164", "trunk_dashed"])]
    same = own["Phone"].map(_india_mobile_e164) == own["Mobile"].map(_india_mobile_e164)
    both_mobile = own["_mobile_kind"].isin(PERSON_MOBILE_KINDS)
    assert same[both_mobile].all()
    assert frame.loc[kind == "shared_office", "Phone"].nunique() <= 4


def test_each_mobile_kind_is_written_as_documented(large_crm: SyntheticCrm) -> None:
    frame = pd.concat([large_crm.contacts, large_crm.leads])
    for kind, pattern in MOBILE_PATTERNS.items():
        values = frame.loc[frame["_mobile_kind"] == kind, "Mobile"]
        assert len(values) > 0, kind
        bad = (~values.str.fullmatch(pattern)).sum()
        assert bad == 0, f"{bad} of {len(values)} {kind} values do not match"
    kind = frame["_mobile_kind"]
    assert frame.loc[kind == "empty", "Mobile"].isna().all()
    assert frame.loc[kind == "placeholder", "Mobile"].isin(PLACEHOLDER_PHONES).all()
    assert frame.loc[kind == "garbage", "Mobile"].isin(GARBAGE_PHONES).all()
    assert frame.loc[kind == "shared_office", "Mobile"].nunique() <= 4


def test_clean_share_of_mobiles_are_valid_indian_mobiles(crm: SyntheticCrm) -> None:
    frame = pd.concat([crm.contacts, crm.leads])
    normalised = frame["Mobile"].map(_india_mobile_e164)
    common = frame["_mobile_kind"].isin(CLEAN_MOBILE_KINDS)
    clean_valid = (common & normalised.notna()).mean()
    assert clean_valid >= 0.80, f"clean valid Indian mobiles: {clean_valid:.3f}"
    assert normalised[common].notna().all()


def test_person_mobiles_normalise_to_one_number_per_person(crm: SyntheticCrm) -> None:
    frame = pd.concat([crm.contacts, crm.leads])
    own = frame[frame["_mobile_kind"].isin(PERSON_MOBILE_KINDS)]
    e164 = own["Mobile"].map(_india_mobile_e164)
    unparsed = e164.isna().sum()
    assert unparsed == 0, f"{unparsed} of the person's own mobiles do not parse as mobiles"
    per_person = e164.groupby(own["_person"].to_numpy()).nunique()
    assert (per_person == 1).all()
    people_per_number = own["_person"].groupby(e164.to_numpy()).nunique()
    assert (people_per_number == 1).all()


def test_landlines_parse_as_indian_fixed_lines(crm: SyntheticCrm) -> None:
    frame = pd.concat([crm.contacts, crm.leads])
    landlines = frame.loc[frame["_mobile_kind"] == "landline", "Mobile"]
    assert len(landlines) > 0
    fixed = phonenumbers.PhoneNumberType.FIXED_LINE
    parsed = [phonenumbers.parse(v, "IN") for v in landlines]
    not_fixed = sum(1 for p in parsed if phonenumbers.number_type(p) != fixed)
    assert not_fixed == 0, f"{not_fixed} landlines are not fixed lines"


def test_foreign_numbers_with_plus_parse_outside_india(crm: SyntheticCrm) -> None:
    frame = pd.concat([crm.contacts, crm.leads])
    foreign = frame.loc[frame["_mobile_kind"] == "foreign_plus", "Mobile"]
    regions = {phonenumbers.region_code_for_number(phonenumbers.parse(v)) for v in foreign}
    assert "IN" not in regions and len(regions) >= 2


def test_shared_office_numbers_are_carried_by_many_people(crm: SyntheticCrm) -> None:
    frame = pd.concat([crm.contacts, crm.leads])
    people = pd.concat([frame["_person"], frame["_person"]], ignore_index=True)
    values = pd.concat([frame["Phone"], frame["Mobile"]], ignore_index=True)
    people_per_value = people[values.notna()].groupby(values.dropna().to_numpy()).nunique()
    placeholders = people_per_value.index.isin(PLACEHOLDER_PHONES + GARBAGE_PHONES)
    shared = people_per_value[~placeholders]
    assert (shared >= 10).sum() >= 3


# Emails -----------------------------------------------------------------------------------


def test_email_kinds_appear_at_their_documented_rates(large_crm: SyntheticCrm) -> None:
    kinds = large_crm.leads["_email_kind"]
    observed = kinds.value_counts(normalize=True)
    for kind, rate in MESS_RATES["email"].items():
        gap = abs(observed.get(kind, 0.0) - rate)
        assert gap <= _tolerance(rate, len(kinds)), kind


def test_each_email_kind_is_written_as_documented(crm: SyntheticCrm) -> None:
    frame = pd.concat([crm.contacts, crm.leads])
    kind = frame["_email_kind"]
    email = frame["Email"]

    def count(mask: pd.Series, check: object) -> int:
        return int(sum(1 for value in email[mask] if not check(value)))  # type: ignore[operator]

    assert email[kind == "empty"].isna().all()
    assert count(kind == "clean", lambda v: v == v.strip().lower() and _is_valid_email(v)) == 0
    assert count(kind == "upper_case", lambda v: v == v.upper() and _is_valid_email(v)) == 0
    assert count(kind == "title_case", lambda v: v != v.lower()) == 0
    assert count(kind == "whitespace", lambda v: v != v.strip() and _is_valid_email(v.strip())) == 0
    assert count(kind == "invalid", lambda v: not _is_valid_email(v.strip())) == 0
    assert count(kind == "typo_domain", lambda v: v.split("@")[1] in TYPO_DOMAINS) == 0
    assert count(kind == "role_account", lambda v: v.split("@")[0] in ROLE_MAILBOXES) == 0
    assert email[kind == "placeholder"].isin(PLACEHOLDER_EMAILS).all()
    assert email[kind == "shared_office"].nunique() <= 3


def test_clean_emails_belong_to_one_person_each(crm: SyntheticCrm) -> None:
    frame = pd.concat([crm.contacts, crm.leads])
    own = frame[frame["_email_kind"].isin(["clean", "upper_case", "title_case", "whitespace"])]
    canonical = own["Email"].str.strip().str.lower()
    assert (canonical.groupby(own["_person"].to_numpy()).nunique() == 1).all()
    assert (own["_person"].groupby(canonical.to_numpy()).nunique() == 1).all()


def test_placeholder_emails_are_shared_by_different_people(crm: SyntheticCrm) -> None:
    frame = pd.concat([crm.contacts, crm.leads])
    placeholder = frame[frame["_email_kind"] == "placeholder"]
    assert placeholder.groupby("Email")["_person"].nunique().max() >= 2


# People across records --------------------------------------------------------------------


def test_some_people_are_two_contacts(crm: SyntheticCrm) -> None:
    records = crm.contacts.groupby("_person").size()
    twice = (records == 2).sum()
    expected = CONTACTS * MESS_RATES["contact_duplicate"]
    assert 0.8 * expected <= twice <= 1.2 * expected
    assert records.max() == 2


def test_split_duplicates_hold_the_phone_in_one_and_the_email_in_the_other(
    crm: SyntheticCrm,
) -> None:
    twice = crm.contacts[crm.contacts.groupby("_person")["id"].transform("size") == 2]
    split = 0
    for _, pair in twice.groupby("_person"):
        phone_only = pair["Mobile"].notna() & pair["Email"].isna()
        email_only = pair["Mobile"].isna() & pair["Email"].notna()
        split += int(phone_only.any() and email_only.any())
    pairs = twice["_person"].nunique()
    assert 0.3 * pairs <= split <= 0.7 * pairs


def test_some_second_records_give_only_an_initial(crm: SyntheticCrm) -> None:
    twice = crm.contacts[crm.contacts.groupby("_person")["id"].transform("size") == 2]
    initial = twice["First_Name"].str.fullmatch(r"[A-Za-z]\.")
    pairs = twice["_person"].nunique()
    assert 0.1 * pairs <= initial.sum() <= 0.5 * pairs
    assert (
        not crm.contacts.loc[~crm.contacts.index.isin(twice.index), "First_Name"]
        .str.fullmatch(r"[A-Za-z]\.")
        .any()
    )


def test_some_people_are_both_a_lead_and_a_contact(crm: SyntheticCrm) -> None:
    in_contacts = crm.leads["_person"].isin(crm.contacts["_person"])
    assert 0.4 < in_contacts.mean() < 0.65
    assert crm.leads.loc[in_contacts, "Converted__s"].mean() > 0.6
    assert not crm.leads.loc[~in_contacts, "Converted__s"].any()


def test_converted_leads_were_created_before_their_contact(crm: SyntheticCrm) -> None:
    first_contact = crm.contacts.groupby("_person")["Created_Time"].min()
    converted = crm.leads[crm.leads["Converted__s"]]
    contact_time = first_contact.loc[converted["_person"]].to_numpy()
    assert (converted["Created_Time"].to_numpy() <= contact_time).all()
    assert (converted["Modified_Time"].to_numpy() >= contact_time).all()


def test_names_carry_case_noise_and_full_name_joins_them(crm: SyntheticCrm) -> None:
    contacts = crm.contacts
    shouting = (contacts["Last_Name"] == contacts["Last_Name"].str.upper()).mean()
    assert 0.005 < shouting < 0.06
    has_first = contacts["First_Name"].notna()
    joined = contacts["First_Name"].str.strip() + " " + contacts["Last_Name"]
    assert (joined[has_first] == contacts.loc[has_first, "Full_Name"]).all()
    assert (contacts.loc[~has_first, "Full_Name"] == contacts.loc[~has_first, "Last_Name"]).all()
