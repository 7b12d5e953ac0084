"""Email addresses: trimmed, lower-cased, checked with `email-validator`, and flagged by risk.

`email-validator` (without DNS look-ups) costs tens of microseconds an address, so plain ASCII
addresses that it certainly accepts are recognised by one vectorised pattern, and each distinct
remaining value is validated once.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from disposable_email_domains import blocklist
from email_validator import EmailNotValidError, validate_email

from ct_pipeline.identity._text import as_text

INVALID = "invalid"
PLACEHOLDER = "placeholder"
DISPOSABLE = "disposable"
ROLE_ACCOUNT = "role_account"
# Most severe first: an address gets the first that applies.
EMAIL_RISKS = (INVALID, PLACEHOLDER, DISPOSABLE, ROLE_ACCOUNT)

# Shared mailboxes: several people (or nobody in particular) read them.
ROLE_LOCAL_PARTS = frozenset(
    {
        "accounts", "admin", "billing", "careers", "contact", "enquiries", "enquiry", "hello",
        "help", "hr", "info", "jobs", "marketing", "no-reply", "noreply", "office", "postmaster",
        "sales", "support", "team", "webmaster",
    }
)  # fmt: skip
# What people type when a form insists on an address they will not give.
PLACEHOLDER_LOCAL_PARTS = frozenset(
    {
        "abc", "asdf", "dummy", "email", "fake", "na", "no-email", "noemail", "nomail", "none",
        "nil", "null", "test", "xyz",
    }
)  # fmt: skip
PLACEHOLDER_DOMAINS = frozenset(
    {"example.com", "example.net", "example.org", "test.com", "domain.com", "abc.com", "xyz.com"}
)
# Throwaway mail services, as the `disposable-email-domains` package lists them (lower-cased).
DISPOSABLE_DOMAINS = frozenset(blocklist)

# ASCII addresses in this shape pass `email-validator` (dot-atom local part, LDH labels, an
# alphabetic top-level domain); the checks below send the few exceptions it makes to it.
_PLAIN_ADDRESS = (
    r"[ \t]*[A-Za-z0-9_+\-]+(?:\.[A-Za-z0-9_+\-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}[ \t]*"
)
# ASCII addresses without quotes, backslashes, brackets or parentheses (so no quoted local part,
# comment or domain literal) that the validator certainly rejects: no '@'; after the first '@'
# (where it splits) a character that cannot be in an ASCII domain, or no period; a final period;
# a space before the '@'.
_SIMPLE_ASCII = r"[!#-'*-Z^-~ \t]*"
_CERTAINLY_INVALID = r"^[^@]*$|^[^@]*@.*[^A-Za-z0-9.\-]|^[^@]*@[^.]*$|\.$|^[^@]* [^@]*@"
# Well under the validator's 64-character local part and 254-character address limits.
_MAX_PLAIN_LENGTH = 64
# Left to the validator: a label starting "ab--" (checked as Punycode/IDNA) and the special-use
# top-level domains it rejects (RFC 6761 and its own list).
_VALIDATOR_DECIDES = (
    r"(?:@|\.)[A-Za-z0-9]{2}--|\.(?:arpa|invalid|local|localhost|onion|test)[ \t]*$"
)


def normalize_emails(
    values: pd.Series, disposable_domains: Iterable[str] | None = None
) -> pd.DataFrame:
    """Normalise email values; the result is index-aligned with `values`.

    Columns:
    - `email` (str): the value trimmed and lower-cased, when `email-validator` accepts it with
      `check_deliverability=False` (for non-ASCII addresses: its normalised form, lower-cased);
      missing otherwise.
    - `risk` (categorical): missing, or the first that applies of `invalid` (a non-blank value
      the validator rejects), `placeholder` (a local part such as `test`, `na`, `noemail`, or
      one character repeated, or a domain such as `example.com` or `test.com`), `disposable` (the
      domain is in `disposable_domains`, or, when none are given, in `DISPOSABLE_DOMAINS`, the
      `disposable-email-domains` package's list), `role_account` (a shared mailbox such as
      `info@` or `admin@`).
    Missing and blank values get a missing `email` and a missing `risk`.
    """
    text = as_text(values)
    disposable = _disposable_domains(disposable_domains)
    email = pd.Series(pd.NA, index=text.index, dtype="str")

    plain = (
        text.str.fullmatch(_PLAIN_ADDRESS)
        & (text.str.len() <= _MAX_PLAIN_LENGTH)
        & ~text.str.contains(_VALIDATOR_DECIDES)
    )
    plain = plain.fillna(False).to_numpy(dtype=bool)
    email[plain] = text[plain].str.strip(" \t").str.lower()

    trimmed = text.str.strip(" \t")
    rejected = text.str.fullmatch(_SIMPLE_ASCII) & trimmed.str.contains(_CERTAINLY_INVALID)
    rejected = rejected.fillna(False).to_numpy(dtype=bool) & ~plain
    present = text.notna().to_numpy() & ~plain & ~rejected
    blank = np.zeros(len(text), dtype=bool)
    blank[present] = text[present].str.strip().str.len().to_numpy() == 0
    rest = present & ~blank
    if rest.any():
        codes, uniques = pd.factorize(text[rest])
        validated = pd.array([_validated(value) for value in uniques], dtype="str")
        email[rest] = validated.take(codes)

    invalid = (rest & email.isna().to_numpy()) | (rejected & (trimmed.str.len() > 0).to_numpy())
    risk = _risk_codes(email, invalid=invalid, disposable=disposable)
    return pd.DataFrame(
        {"email": email, "risk": pd.Categorical.from_codes(risk, categories=list(EMAIL_RISKS))},
        index=values.index,
    )


def _validated(value: str) -> str | None:
    """The validator's normalised, lower-cased address for a trimmed value, or None."""
    try:
        return validate_email(value.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return None


def _risk_codes(email: pd.Series, invalid: np.ndarray, disposable: frozenset[str]) -> np.ndarray:
    """Risk codes (-1 for none) for normalised addresses; `invalid` marks rejected values."""
    risk = np.full(len(email), -1, dtype=np.int8)
    # A valid address has one '@' outside quotes, and the validator refuses quoted local parts.
    parts = pc.split_pattern(pa.array(email.array), "@", max_splits=1)
    local, domain = pc.list_element(parts, 0), pc.list_element(parts, 1)

    repeated = pc.and_(
        pc.greater_equal(pc.utf8_length(local), 2),
        pc.equal(pc.utf8_slice_codeunits(local, 1), pc.utf8_slice_codeunits(local, 0, -1)),
    )
    checks = (
        (ROLE_ACCOUNT, _is_in(local, ROLE_LOCAL_PARTS)),
        (DISPOSABLE, _is_in(domain, disposable)),
        (PLACEHOLDER, pc.or_(_is_in(local, PLACEHOLDER_LOCAL_PARTS), repeated)),
        (PLACEHOLDER, _is_in(domain, PLACEHOLDER_DOMAINS)),
    )
    for name, flagged in checks:
        risk[pc.fill_null(flagged, False).to_numpy(zero_copy_only=False)] = EMAIL_RISKS.index(name)
    risk[invalid] = EMAIL_RISKS.index(INVALID)
    return risk


def _is_in(values: pa.Array, members: frozenset[str]) -> pa.Array:
    """Arrow membership test against a set of strings."""
    return pc.is_in(values, value_set=pa.array(sorted(members), type=values.type))


def _disposable_domains(given: Iterable[str] | None) -> frozenset[str]:
    """The domains to flag as disposable: those given, else the package's list."""
    if given is None:
        return DISPOSABLE_DOMAINS
    return frozenset(domain.strip().lower() for domain in given)
