"""Choosing the one identity each CRM record is uploaded to CleverTap under, or saying why none.

The identity must be the value the app's SDK sets at login (usually the mobile number in E.164,
sometimes the email): anything else creates a second, anonymous profile in CleverTap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from ct_pipeline.identity import emails, phones

PHONE = "phone"
EMAIL = "email"

# `no_identity_reason` values, in the order they are considered.
LANDLINE_ONLY_MOBILE_REQUIRED = "landline_only_mobile_required"
PLACEHOLDER_ONLY = "placeholder_only"
RISKY_EMAIL_ONLY = "risky_email_only"
NO_VALID_PHONE_OR_EMAIL = "no_valid_phone_or_email"
NO_PHONE_OR_EMAIL = "no_phone_or_email"
NO_IDENTITY_REASONS = (
    LANDLINE_ONLY_MOBILE_REQUIRED,
    PLACEHOLDER_ONLY,
    RISKY_EMAIL_ONLY,
    NO_VALID_PHONE_OR_EMAIL,
    NO_PHONE_OR_EMAIL,
)

_MOBILE_TYPES = (phones.MOBILE, phones.FIXED_LINE_OR_MOBILE)


@dataclass(frozen=True)
class IdentityPolicy:
    """Which identity a record gets.

    `prefer`: try phone columns before email columns ("phone") or after ("email").
    `phone_columns`, `email_columns`: source columns, each list tried in its order.
    `mobile_columns`: phone columns meant to hold mobiles (a landline there is flagged).
    `mobile_only`: only a mobile number can be a phone identity (the SDK logs in by OTP);
    `accept_fixed_line_or_mobile` decides whether numbers the plan cannot tell count as mobile.
    `email_blocking_risks`: email risks that make an address unusable as an identity.
    Phone placeholders are never usable.
    """

    prefer: Literal["phone", "email"] = PHONE
    phone_columns: tuple[str, ...] = ("Mobile", "Phone")
    email_columns: tuple[str, ...] = ("Email",)
    mobile_columns: tuple[str, ...] = ("Mobile",)
    mobile_only: bool = False
    accept_fixed_line_or_mobile: bool = True
    region: str = "IN"
    foreign_regions: tuple[str, ...] = phones.DEFAULT_FOREIGN_REGIONS
    email_blocking_risks: frozenset[str] = field(
        default_factory=lambda: frozenset(
            {emails.PLACEHOLDER, emails.ROLE_ACCOUNT, emails.DISPOSABLE}
        )
    )

    def __post_init__(self) -> None:
        if self.prefer not in (PHONE, EMAIL):
            raise ValueError(f"prefer is {self.prefer!r}; use 'phone' or 'email'")
        if not self.phone_columns and not self.email_columns:
            raise ValueError("no source columns: name at least one phone or email column")


def choose_identity(
    records: pd.DataFrame,
    policy: IdentityPolicy | None = None,
    normalised: Mapping[str, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Choose each record's identity; the result is index-aligned with `records`.

    `normalised` may hold, by source column, what `normalize_phones` (with the policy's region
    and foreign regions, and `mobile_field` for its mobile columns) or `normalize_emails` gave
    for that column already, so that a caller keeping those columns does not compute them twice.

    Source columns are tried in the policy's order and the first usable value wins; a column
    missing from `records` counts as empty. Columns of the result:
    - `identity` (str): the E.164 number or the normalised email; missing when none is usable.
    - `identity_kind`: `phone` or `email`; `identity_source`: the column it came from.
    - `identity_risk`: the chosen value's non-blocking risk (e.g. `no_plus_foreign_possible`,
      `extension_dropped`, `landline_in_mobile_field`), for review; usually missing.
    - `no_identity_reason`: why a record has none, the first that applies of
      `landline_only_mobile_required` (only valid non-mobile numbers, and `mobile_only`),
      `placeholder_only` (every valid value is a placeholder),
      `risky_email_only` (only emails with a blocking risk such as `role_account`),
      `no_valid_phone_or_email` (values present but none valid),
      `no_phone_or_email` (every source column empty).
    A record without an identity belongs in the review queue and must never be uploaded.
    """
    policy = policy or IdentityPolicy()
    given = normalised or {}
    candidates = [
        _candidate(records, column, kind, policy, given.get(column))
        for column, kind in _order(policy)
    ]
    usable = np.column_stack([candidate["usable"] for candidate in candidates])
    has_identity = usable.any(axis=1)
    chosen = usable.argmax(axis=1)

    identity = pd.Series(pd.NA, index=records.index, dtype="str")
    kind = pd.Series(pd.NA, index=records.index, dtype="str")
    source = pd.Series(pd.NA, index=records.index, dtype="str")
    risk = pd.Series(pd.NA, index=records.index, dtype="str")
    for position, candidate in enumerate(candidates):
        rows = has_identity & (chosen == position)
        identity[rows] = candidate["value"][rows]
        kind[rows] = candidate["kind"]
        source[rows] = candidate["column"]
        risk[rows] = candidate["risk"][rows]

    reason = _no_identity_reason(candidates, policy)
    reason = pd.Series(np.where(has_identity, None, reason), index=records.index, dtype="str")
    return pd.DataFrame(
        {
            "identity": identity,
            "identity_kind": kind,
            "identity_source": source,
            "identity_risk": risk,
            "no_identity_reason": reason,
        }
    )


def _order(policy: IdentityPolicy) -> list[tuple[str, str]]:
    """(column, kind) pairs in the order they are tried."""
    phone_sources = [(column, PHONE) for column in policy.phone_columns]
    email_sources = [(column, EMAIL) for column in policy.email_columns]
    if policy.prefer == PHONE:
        return phone_sources + email_sources
    return email_sources + phone_sources


def _candidate(
    records: pd.DataFrame,
    column: str,
    kind: str,
    policy: IdentityPolicy,
    normalised: pd.DataFrame | None,
) -> dict:
    """One source column normalised, with per-record flags used to choose and to explain."""
    values = records[column] if column in records else pd.Series(None, records.index, object)
    present = (values.astype("str").str.strip().str.len() > 0).fillna(False).to_numpy(dtype=bool)
    if kind == PHONE:
        if normalised is None:
            normalised = phones.normalize_phones(
                values,
                policy.region,
                mobile_field=column in policy.mobile_columns,
                foreign_regions=policy.foreign_regions,
            )
        value = normalised["e164"].to_numpy(dtype=object)
        risk = normalised["risk"].astype("str").to_numpy(dtype=object)
        valid = normalised["e164"].notna().to_numpy()
        placeholder = (normalised["risk"] == phones.PLACEHOLDER).to_numpy()
        accepted_types = _MOBILE_TYPES if policy.accept_fixed_line_or_mobile else _MOBILE_TYPES[:1]
        not_mobile = valid & ~normalised["number_type"].isin(accepted_types).to_numpy()
        wrong_type = not_mobile if policy.mobile_only else np.zeros(len(values), dtype=bool)
        blocked_risk = np.zeros(len(values), dtype=bool)
    else:
        if normalised is None:
            normalised = emails.normalize_emails(values)
        value = normalised["email"].to_numpy(dtype=object)
        risk = normalised["risk"].astype("str").to_numpy(dtype=object)
        valid = normalised["email"].notna().to_numpy()
        placeholder = (normalised["risk"] == emails.PLACEHOLDER).to_numpy()
        wrong_type = np.zeros(len(values), dtype=bool)
        blocked_risk = normalised["risk"].isin(policy.email_blocking_risks).to_numpy()
    blocked_risk = blocked_risk & ~placeholder
    return {
        "column": column,
        "kind": kind,
        "value": value,
        "risk": risk,
        "present": present,
        "valid": valid,
        "placeholder": placeholder & valid,
        "wrong_type": wrong_type & ~placeholder,
        "blocked_risk": blocked_risk & valid,
        "usable": valid & ~placeholder & ~wrong_type & ~blocked_risk,
    }


def _no_identity_reason(candidates: list[dict], policy: IdentityPolicy) -> np.ndarray:
    """The reason each record would have no identity (used where it has none)."""

    def any_of(flag: str) -> np.ndarray:
        return np.column_stack([candidate[flag] for candidate in candidates]).any(axis=1)

    return np.select(
        [any_of("wrong_type"), any_of("placeholder"), any_of("blocked_risk"), any_of("present")],
        [
            LANDLINE_ONLY_MOBILE_REQUIRED,
            PLACEHOLDER_ONLY,
            RISKY_EMAIL_ONLY,
            NO_VALID_PHONE_OR_EMAIL,
        ],
        default=NO_PHONE_OR_EMAIL,
    )
