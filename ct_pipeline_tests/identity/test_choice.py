"""choose_identity applies the policy and explains every record it cannot give an identity."""

from __future__ import annotations

import pandas as pd
import pytest

from ct_pipeline.identity import IdentityPolicy, choose_identity


def records(**columns: list[object]) -> pd.DataFrame:
    return pd.DataFrame(columns)


def test_mobile_wins_over_email_when_phone_is_preferred() -> None:
    chosen = choose_identity(records(Mobile=["98123 45678"], Phone=[None], Email=["a@acme.in"]))
    assert chosen.loc[0, ["identity", "identity_kind", "identity_source"]].tolist() == [
        "+919812345678",
        "phone",
        "Mobile",
    ]


def test_email_wins_when_email_is_preferred() -> None:
    frame = records(Mobile=["98123 45678"], Phone=[None], Email=[" A@Acme.in "])
    chosen = choose_identity(frame, IdentityPolicy(prefer="email"))
    assert chosen.loc[0, "identity"] == "a@acme.in"
    assert chosen.loc[0, "identity_source"] == "Email"


def test_falls_back_to_the_next_column_when_the_first_is_invalid() -> None:
    frame = records(Mobile=["12"], Phone=["+91 98123 45677"], Email=[None])
    assert choose_identity(frame).loc[0, "identity_source"] == "Phone"


def test_placeholder_only_record_has_no_identity() -> None:
    chosen = choose_identity(records(Mobile=["9999999999"], Phone=[None], Email=["test@test.com"]))
    assert pd.isna(chosen.loc[0, "identity"])
    assert chosen.loc[0, "no_identity_reason"] == "placeholder_only"


def test_landline_is_refused_when_mobile_is_required() -> None:
    frame = records(Mobile=["(080) 2345 6789"], Phone=[None], Email=[None])
    chosen = choose_identity(frame, IdentityPolicy(mobile_only=True))
    assert pd.isna(chosen.loc[0, "identity"])
    assert chosen.loc[0, "no_identity_reason"] == "landline_only_mobile_required"


# North American numbering cannot tell a mobile from a landline: fixed_line_or_mobile.
NANP_NUMBER = records(Mobile=["+1 650 253 2222"], Phone=[None], Email=[None])


def test_mobile_only_accepts_a_fixed_line_or_mobile_number_by_default() -> None:
    chosen = choose_identity(NANP_NUMBER, IdentityPolicy(mobile_only=True))
    assert chosen.loc[0, "identity"] == "+16502532222"
    assert pd.isna(chosen.loc[0, "no_identity_reason"])


def test_mobile_only_refuses_a_fixed_line_or_mobile_number_when_not_accepted() -> None:
    policy = IdentityPolicy(mobile_only=True, accept_fixed_line_or_mobile=False)
    chosen = choose_identity(NANP_NUMBER, policy)
    assert pd.isna(chosen.loc[0, "identity"])
    assert chosen.loc[0, "no_identity_reason"] == "landline_only_mobile_required"


def test_a_fixed_line_or_mobile_number_is_used_when_mobiles_are_not_required() -> None:
    policy = IdentityPolicy(mobile_only=False, accept_fixed_line_or_mobile=False)
    assert choose_identity(NANP_NUMBER, policy).loc[0, "identity"] == "+16502532222"


def test_landline_is_used_but_flagged_when_mobile_is_not_required() -> None:
    chosen = choose_identity(records(Mobile=["(080) 2345 6789"], Phone=[None], Email=[None]))
    assert chosen.loc[0, "identity"] == "+918023456789"
    assert chosen.loc[0, "identity_risk"] == "landline_in_mobile_field"


def test_role_account_email_is_not_an_identity() -> None:
    chosen = choose_identity(records(Mobile=[None], Phone=[None], Email=["info@acme.in"]))
    assert chosen.loc[0, "no_identity_reason"] == "risky_email_only"


def test_disposable_email_is_not_an_identity_with_the_packaged_list() -> None:
    chosen = choose_identity(records(Mobile=[None], Phone=[None], Email=["rohan.k@mailinator.com"]))
    assert pd.isna(chosen.loc[0, "identity"])
    assert chosen.loc[0, "no_identity_reason"] == "risky_email_only"


@pytest.mark.parametrize(
    ("mobile", "email", "reason"),
    [
        ("not a number", "not an email", "no_valid_phone_or_email"),
        (None, "  ", "no_phone_or_email"),
    ],
)
def test_reason_when_nothing_is_valid(mobile: str | None, email: str | None, reason: str) -> None:
    chosen = choose_identity(records(Mobile=[mobile], Phone=[None], Email=[email]))
    assert chosen.loc[0, "no_identity_reason"] == reason


def test_a_missing_source_column_counts_as_empty() -> None:
    chosen = choose_identity(records(Email=["priya@acme.in"]))
    assert chosen.loc[0, "identity"] == "priya@acme.in"


def test_record_with_identity_has_no_reason() -> None:
    chosen = choose_identity(records(Mobile=["98123 45678"], Email=[None]))
    assert pd.isna(chosen.loc[0, "no_identity_reason"])


def test_result_is_aligned_with_the_records_index() -> None:
    frame = pd.DataFrame({"Mobile": ["98123 45678", None]}, index=["z", "y"])
    assert list(choose_identity(frame).index) == ["z", "y"]


def test_policy_rejects_an_unknown_preference() -> None:
    with pytest.raises(ValueError, match="prefer"):
        IdentityPolicy(prefer="fax")  # type: ignore[arg-type]
