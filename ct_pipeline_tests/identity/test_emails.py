"""normalize_emails agrees with email-validator (fast pattern included) and flags risks."""

from __future__ import annotations

import pandas as pd
import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from ct_pipeline.identity import normalize_emails
from ct_pipeline_tests.identity.helpers import mask

ADDRESS_CHARACTERS = list('abcXYZ019._+-@ \t,;"()[]\\') + [
    "--",
    "@@",
    "é",
    "ü",
    ".test",
    ".com",
    "xn--",
    "\u00a0",
]


def validator_answer(value: object) -> str | None:
    """The reference: the validator's normalised address for the trimmed value, lower-cased."""
    if value is None or not isinstance(value, str) or not value.strip():
        return None
    try:
        return validate_email(value.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return None


def disagreements(values: list[object]) -> list[str]:
    """Masked descriptions of the values where normalize_emails and the validator differ."""
    result = normalize_emails(pd.Series(values, dtype=object))
    got = result["email"].astype(object).where(result["email"].notna(), None).tolist()
    return [
        f"{mask(str(value))}: got {mask(answer)}, validator {mask(validator_answer(value))}"
        for value, answer in zip(values, got, strict=True)
        if answer != validator_answer(value)
    ]


@st.composite
def address_like(draw: st.DrawFn) -> str:
    """Strings built from address pieces, so that many are valid and many nearly so."""
    local = "".join(draw(st.lists(st.sampled_from(ADDRESS_CHARACTERS), min_size=1, max_size=8)))
    domain = "".join(draw(st.lists(st.sampled_from(ADDRESS_CHARACTERS), max_size=8)))
    tld = draw(st.sampled_from(["com", "in", "co.in", "test", "c", "123", "local", "Museum"]))
    return f"{local}@{domain}.{tld}"


@settings(max_examples=150, deadline=None)
@given(st.lists(address_like(), max_size=40))
def test_address_like_strings_match_the_validator(values: list[str]) -> None:
    assert disagreements(values) == []


@settings(max_examples=80, deadline=None)
@given(st.lists(st.text(max_size=30), max_size=30))
def test_arbitrary_text_matches_the_validator(values: list[str]) -> None:
    assert disagreements(values) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("  Priya.Sharma@Example.CO.IN ", "priya.sharma@example.co.in"),
        ("ravi+crm@gmail.com", "ravi+crm@gmail.com"),
        ("no-at-sign.com", None),
        ("a..b@gmail.com", None),
        ("someone@localhost", None),
        ("someone@shop.test", None),
        ("", None),
        (None, None),
    ],
)
def test_hand_written_address(value: str | None, expected: str | None) -> None:
    email = normalize_emails(pd.Series([value], dtype=object))["email"].iat[0]
    assert (None if pd.isna(email) else email) == expected


@pytest.mark.parametrize(
    ("value", "risk"),
    [
        ("info@acme.in", "role_account"),
        ("Support@Acme.in", "role_account"),
        ("test@test.com", "placeholder"),
        ("noemail@gmail.com", "placeholder"),
        ("xxxx@gmail.com", "placeholder"),
        ("priya@example.com", "placeholder"),
        ("not an address", "invalid"),
    ],
)
def test_risky_address_is_flagged(value: str, risk: str) -> None:
    assert normalize_emails(pd.Series([value]))["risk"].iat[0] == risk


def test_disposable_domain_is_flagged_when_a_list_is_given() -> None:
    values = pd.Series(["x.y@mailinator.com"])
    result = normalize_emails(values, disposable_domains=["Mailinator.com"])
    assert result["risk"].iat[0] == "disposable"


@pytest.mark.parametrize(
    "value", ["x.y@mailinator.com", " Someone@YOPMAIL.com", "a.b@guerrillamail.com"]
)
def test_disposable_domain_is_flagged_with_the_packaged_list(value: str) -> None:
    result = normalize_emails(pd.Series([value]))

    assert result["risk"].iat[0] == "disposable"
    assert result["email"].iat[0] == value.strip().lower()


def test_ordinary_address_has_no_risk() -> None:
    assert pd.isna(normalize_emails(pd.Series(["priya.sharma@acme.in"]))["risk"].iat[0])


def test_missing_and_blank_have_neither_email_nor_risk() -> None:
    result = normalize_emails(pd.Series([None, "", "   "], dtype=object))
    assert result["email"].isna().all()
    assert result["risk"].isna().all()


def test_result_is_aligned_with_the_input_index() -> None:
    result = normalize_emails(pd.Series(["A@B.in", None], index=["x", "y"]))
    assert list(result.index) == ["x", "y"]
    assert result["email"].iat[0] == "a@b.in"
