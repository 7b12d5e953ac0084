"""How the synthetic CRM writes phone numbers and emails, clean and messy.

Each record field gets a *kind* (drawn at the rates in `MOBILE_KIND_RATES`, `PHONE_KIND_RATES`
and `EMAIL_KIND_RATES`), and each kind has one vectorised renderer that turns the person's true
value into what a sales agent or a web form would have typed. Kinds are kept as ground truth so
tests can check every rendering, and benchmarks can score identity resolution.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa

# Mobile field: ~84% a common clean format of the person's own Indian mobile, ~8% the same
# number written unusually, the rest not a usable personal mobile.
MOBILE_KIND_RATES: dict[str, float] = {
    "plain": 0.477,  # 9876543210
    "e164": 0.16,  # +919876543210
    "plus91_spaced": 0.12,  # +91 98765 43210
    "spaced": 0.08,  # 98765 43210
    "trunk_dashed": 0.02,  # 098765-43210
    "country_code_no_plus": 0.02,  # 919876543210
    "intl_prefix_00": 0.01,  # 0091 98765 43210
    "brackets": 0.01,  # (+91) 98765-43210
    "dots": 0.01,  # 987.654.3210
    "extension": 0.005,  # +91 98765 43210 ext. 12
    "full_width": 0.005,  # ９８７６５ ４３２１０
    "empty": 0.04,
    "landline": 0.015,  # (080) 2345 6789 in the Mobile field
    "foreign_plus": 0.008,  # +971 50 123 4567
    "foreign_no_plus": 0.004,  # 971501234567, or a US number with no country code
    "placeholder": 0.008,  # 9999999999, 0000000000, 1234567890
    "garbage": 0.003,  # N/A, -, call later
    "truncated": 0.002,  # a mobile missing its last digit
    "shared_office": 0.003,  # one of a few office numbers many records carry
}
CLEAN_MOBILE_KINDS = ("plain", "e164", "plus91_spaced", "spaced")
PERSON_MOBILE_KINDS = CLEAN_MOBILE_KINDS + (
    "trunk_dashed",
    "country_code_no_plus",
    "intl_prefix_00",
    "brackets",
    "dots",
    "extension",
    "full_width",
)

# Phone field: mostly empty or a landline; sometimes the mobile again, or a shared office line.
PHONE_KIND_RATES: dict[str, float] = {
    "empty": 0.55,
    "landline": 0.27,
    "plain": 0.06,
    "spaced": 0.04,
    "e164": 0.02,
    "trunk_dashed": 0.02,
    "shared_office": 0.04,
}

EMAIL_KIND_RATES: dict[str, float] = {
    "clean": 0.80,
    "upper_case": 0.02,  # RAHUL.SHARMA12@GMAIL.COM
    "title_case": 0.03,  # Rahul.Sharma12@Gmail.Com
    "whitespace": 0.03,  # leading or trailing blanks or a tab
    "empty": 0.06,
    "invalid": 0.02,  # no @, two @, a comma for a dot, no TLD, a space inside
    "typo_domain": 0.015,  # gmial.com, yaho.co.in
    "role_account": 0.01,  # info@company.in
    "placeholder": 0.01,  # test@test.com
    "shared_office": 0.005,  # one of a few office addresses many records carry
}
CLEAN_EMAIL_KINDS = ("clean", "upper_case", "title_case", "whitespace")

PLACEHOLDER_PHONES = ("9999999999", "0000000000", "1234567890", "9876543210", "1111111111")
GARBAGE_PHONES = ("N/A", "NA", "-", "na", "nil", "not available", "call later", "0", "xxxxxxxxxx")
PLACEHOLDER_EMAILS = (
    "test@test.com",
    "abc@abc.com",
    "na@na.com",
    "noemail@gmail.com",
    "xyz@gmail.com",
    "none@none.com",
    "test@gmail.com",
)
ROLE_MAILBOXES = ("info", "admin", "accounts", "support", "contact", "hr", "sales", "office")
TYPO_DOMAINS = (
    "gmial.com",
    "gamil.com",
    "gmail.co",
    "gmai.com",
    "yahooo.com",
    "yaho.co.in",
    "rediffmai.com",
    "hotmial.com",
    "outlok.com",
)

# (STD code, subscriber length): metros have 8-digit subscriber numbers, other cities 7.
STD_CODES = (
    ("11", 8),
    ("22", 8),
    ("33", 8),
    ("44", 8),
    ("80", 8),
    ("40", 8),
    ("20", 8),
    ("79", 8),
    ("141", 7),
    ("522", 7),
    ("484", 7),
    ("172", 7),
)

FULL_WIDTH = str.maketrans("0123456789+", "０１２３４５６７８９＋")

Renderer = Callable[[np.random.Generator, pd.Series, "RenderContext"], pd.Series]


class RenderContext:
    """Values a renderer may need beyond the person's own: shared pools for the whole CRM."""

    def __init__(self, shared_phones: np.ndarray, shared_emails: np.ndarray, domains: np.ndarray):
        self.shared_phones = shared_phones
        self.shared_emails = shared_emails
        self.company_domains = domains


def draw_kinds(rng: np.random.Generator, rates: dict[str, float], size: int) -> np.ndarray:
    """Draw `size` kind codes (indexes into `list(rates)`) at the given rates."""
    probabilities = np.array(list(rates.values()), dtype=np.float64)
    return rng.choice(len(rates), size=size, p=probabilities / probabilities.sum()).astype(np.int8)


def kinds_categorical(codes: np.ndarray, rates: dict[str, float]) -> pd.Categorical:
    """The kind codes as a categorical of kind names, for ground-truth columns."""
    return pd.Categorical.from_codes(codes, categories=list(rates))


def render_phones(
    rng: np.random.Generator,
    codes: np.ndarray,
    rates: dict[str, float],
    mobiles: np.ndarray,
    context: RenderContext,
) -> pd.Series:
    """Write each record's phone field according to its kind code; `mobiles` are 10-digit ints."""
    digits = pd.Series(mobiles, copy=False).astype("str")
    return _render(rng, codes, list(rates), digits, PHONE_RENDERERS, context)


def render_emails(
    rng: np.random.Generator,
    codes: np.ndarray,
    rates: dict[str, float],
    emails: pd.Series,
    context: RenderContext,
) -> pd.Series:
    """Write each record's email field according to its kind code; `emails` are canonical."""
    return _render(rng, codes, list(rates), emails, EMAIL_RENDERERS, context)


def _render(
    rng: np.random.Generator,
    codes: np.ndarray,
    kinds: list[str],
    truth: pd.Series,
    renderers: dict[str, Renderer],
    context: RenderContext,
) -> pd.Series:
    truth = truth.reset_index(drop=True)
    positions = [np.empty(0, dtype=np.int64)]
    pieces = [pa.array([], type=pa.large_string())]
    for code, kind in enumerate(kinds):
        rows = np.flatnonzero(codes == code)
        if len(rows) == 0:
            continue
        if kind == "empty":
            values = pa.nulls(len(rows), type=pa.large_string())
        else:
            rendered = renderers[kind](rng, truth.take(rows).reset_index(drop=True), context)
            values = pa.array(rendered).cast(pa.large_string())
        positions.append(rows)
        pieces.append(values)
    # Each kind was rendered in one vectorised pass; put the rows back in record order.
    order = np.argsort(np.concatenate(positions), kind="stable")
    return pd.Series(pa.concat_arrays(pieces).take(pa.array(order)), dtype="str")


def _pick(rng: np.random.Generator, choices: tuple[str, ...] | np.ndarray, size: int) -> pd.Series:
    pool = np.asarray(choices, dtype=object)
    return pd.Series(pool[rng.integers(0, len(pool), size)], dtype="str")


def _halves(digits: pd.Series) -> tuple[pd.Series, pd.Series]:
    return digits.str.slice(0, 5), digits.str.slice(5)


def _choose(rng: np.random.Generator, variants: list[pd.Series]) -> pd.Series:
    """Per row, take one of several equally likely renderings."""
    which = rng.integers(0, len(variants), len(variants[0]))
    result = variants[0].copy()
    for i, variant in enumerate(variants[1:], start=1):
        result = result.where(which != i, variant)
    return result


def _plain(rng: np.random.Generator, d: pd.Series, ctx: RenderContext) -> pd.Series:
    return d


def _e164(rng: np.random.Generator, d: pd.Series, ctx: RenderContext) -> pd.Series:
    return "+91" + d


def _plus91_spaced(rng: np.random.Generator, d: pd.Series, ctx: RenderContext) -> pd.Series:
    a, b = _halves(d)
    return "+91 " + a + " " + b


def _spaced(rng: np.random.Generator, d: pd.Series, ctx: RenderContext) -> pd.Series:
    a, b = _halves(d)
    return a + " " + b


def _trunk_dashed(rng: np.random.Generator, d: pd.Series, ctx: RenderContext) -> pd.Series:
    a, b = _halves(d)
    return _choose(rng, ["0" + a + "-" + b, "0" + d, "0 " + a + " " + b])


def _country_code_no_plus(rng: np.random.Generator, d: pd.Series, ctx: RenderContext) -> pd.Series:
    a, b = _halves(d)
    return _choose(rng, ["91" + d, "91 " + a + " " + b, "91-" + d])


def _intl_prefix_00(rng: np.random.Generator, d: pd.Series, ctx: RenderContext) -> pd.Series:
    a, b = _halves(d)
    return _choose(rng, ["0091 " + a + " " + b, "0091" + d, "0091-" + d])


def _brackets(rng: np.random.Generator, d: pd.Series, ctx: RenderContext) -> pd.Series:
    a, b = _halves(d)
    return _choose(rng, ["(+91) " + a + "-" + b, "(+91)" + d, "(91) " + a + " " + b])


def _dots(rng: np.random.Generator, d: pd.Series, ctx: RenderContext) -> pd.Series:
    a, b = _halves(d)
    dotted = d.str.slice(0, 3) + "." + d.str.slice(3, 6) + "." + d.str.slice(6)
    return _choose(rng, [dotted, a + "." + b, "+91." + a + "." + b])


def _extension(rng: np.random.Generator, d: pd.Series, ctx: RenderContext) -> pd.Series:
    ext = pd.Series(rng.integers(1, 999, len(d)), copy=False).astype("str")
    base = _choose(rng, [_plus91_spaced(rng, d, ctx), d, _spaced(rng, d, ctx)])
    return _choose(rng, [base + " ext. " + ext, base + " x" + ext, base + " extn " + ext])


def _full_width(rng: np.random.Generator, d: pd.Series, ctx: RenderContext) -> pd.Series:
    return _choose(rng, [d, _spaced(rng, d, ctx), _e164(rng, d, ctx)]).str.translate(FULL_WIDTH)


def _landline(rng: np.random.Generator, d: pd.Series, ctx: RenderContext) -> pd.Series:
    return landlines(rng, len(d))


def landlines(rng: np.random.Generator, n: int) -> pd.Series:
    """`n` Indian landline numbers with STD codes, in the ways people write them."""
    which = rng.integers(0, len(STD_CODES), n)
    std = pd.Series(np.array([c for c, _ in STD_CODES], dtype=object)[which], dtype="str")
    length = np.array([k for _, k in STD_CODES])[which]
    # Fixed-line subscriber numbers in Indian cities mostly start with 2.
    subscriber_int = 2 * 10 ** (length - 1) + rng.integers(0, 10 ** (length - 1))
    subscriber = pd.Series(subscriber_int, copy=False).astype("str")
    head = subscriber.str.slice(0, -4)
    tail = subscriber.str.slice(-4)
    return _choose(
        rng,
        [
            "(0" + std + ") " + head + " " + tail,
            "0" + std + "-" + head + " " + tail,
            "0" + std + "-" + subscriber,
            "+91 " + std + " " + subscriber,
            "0" + std + " " + subscriber,
        ],
    )


def _foreign(rng: np.random.Generator, n: int, plus: bool) -> pd.Series:
    def digits(count: int) -> pd.Series:
        return pd.Series(rng.integers(10 ** (count - 1), 10**count, n), copy=False).astype("str")

    us_area = _pick(rng, ("212", "415", "650", "408", "646", "917", "312", "713"), n)
    us_line = _pick(rng, tuple("23456789"), n) + digits(6)
    uae_net = _pick(rng, ("50", "52", "54", "55", "56", "58"), n)
    uk_mob = _pick(rng, ("74", "75", "77", "78", "79"), n)
    sg_mob = _pick(rng, ("8", "9"), n)
    d3, d4, d6, d7, d8 = digits(3), digits(4), digits(6), digits(7), digits(8)
    if plus:
        variants = [
            "+971 " + uae_net + " " + d3 + " " + d4,
            "+1 " + us_area + " " + us_line.str.slice(0, 3) + " " + us_line.str.slice(3),
            "+44 " + uk_mob + d8.str.slice(0, 2) + " " + d6,
            "+65 " + sg_mob + d3 + " " + d4,
        ]
    else:
        variants = [
            "971" + uae_net + d7,
            "1" + us_area + us_line,
            us_area + us_line,  # no country code at all: parses as a plausible Indian number
            "44" + uk_mob + d8,
            "65" + sg_mob + d7,
        ]
    return _choose(rng, variants)


def _foreign_plus(rng: np.random.Generator, d: pd.Series, ctx: RenderContext) -> pd.Series:
    return _foreign(rng, len(d), plus=True)


def _foreign_no_plus(rng: np.random.Generator, d: pd.Series, ctx: RenderContext) -> pd.Series:
    return _foreign(rng, len(d), plus=False)


def _placeholder_phone(rng: np.random.Generator, d: pd.Series, ctx: RenderContext) -> pd.Series:
    return _pick(rng, PLACEHOLDER_PHONES, len(d))


def _garbage_phone(rng: np.random.Generator, d: pd.Series, ctx: RenderContext) -> pd.Series:
    return _pick(rng, GARBAGE_PHONES, len(d))


def _truncated(rng: np.random.Generator, d: pd.Series, ctx: RenderContext) -> pd.Series:
    return d.str.slice(0, 9)


def _shared_phone(rng: np.random.Generator, d: pd.Series, ctx: RenderContext) -> pd.Series:
    return _pick(rng, ctx.shared_phones, len(d))


PHONE_RENDERERS: dict[str, Renderer] = {
    "plain": _plain,
    "e164": _e164,
    "plus91_spaced": _plus91_spaced,
    "spaced": _spaced,
    "trunk_dashed": _trunk_dashed,
    "country_code_no_plus": _country_code_no_plus,
    "intl_prefix_00": _intl_prefix_00,
    "brackets": _brackets,
    "dots": _dots,
    "extension": _extension,
    "full_width": _full_width,
    "landline": _landline,
    "foreign_plus": _foreign_plus,
    "foreign_no_plus": _foreign_no_plus,
    "placeholder": _placeholder_phone,
    "garbage": _garbage_phone,
    "truncated": _truncated,
    "shared_office": _shared_phone,
}


def _email_clean(rng: np.random.Generator, e: pd.Series, ctx: RenderContext) -> pd.Series:
    return e


def _email_upper(rng: np.random.Generator, e: pd.Series, ctx: RenderContext) -> pd.Series:
    return e.str.upper()


def _email_title(rng: np.random.Generator, e: pd.Series, ctx: RenderContext) -> pd.Series:
    return e.str.title()


def _email_whitespace(rng: np.random.Generator, e: pd.Series, ctx: RenderContext) -> pd.Series:
    return _choose(rng, [" " + e, e + " ", "  " + e + " ", e + "\t"])


def _email_invalid(rng: np.random.Generator, e: pd.Series, ctx: RenderContext) -> pd.Series:
    return _choose(
        rng,
        [
            e.str.replace("@", "", regex=False),
            e.str.replace("@", "@@", regex=False),
            e.str.replace(r"\.([a-z]+)$", r",\1", regex=True),
            e.str.replace(r"@([^.@]+)\..*$", r"@\1", regex=True),
            e.str.replace("@", " @", regex=False),
            e + ".",
        ],
    )


def _email_typo_domain(rng: np.random.Generator, e: pd.Series, ctx: RenderContext) -> pd.Series:
    return e.str.replace(r"@.*$", "@", regex=True) + _pick(rng, TYPO_DOMAINS, len(e))


def _email_role(rng: np.random.Generator, e: pd.Series, ctx: RenderContext) -> pd.Series:
    return _pick(rng, ROLE_MAILBOXES, len(e)) + "@" + _pick(rng, ctx.company_domains, len(e))


def _email_placeholder(rng: np.random.Generator, e: pd.Series, ctx: RenderContext) -> pd.Series:
    return _pick(rng, PLACEHOLDER_EMAILS, len(e))


def _email_shared(rng: np.random.Generator, e: pd.Series, ctx: RenderContext) -> pd.Series:
    return _pick(rng, ctx.shared_emails, len(e))


EMAIL_RENDERERS: dict[str, Renderer] = {
    "clean": _email_clean,
    "upper_case": _email_upper,
    "title_case": _email_title,
    "whitespace": _email_whitespace,
    "invalid": _email_invalid,
    "typo_domain": _email_typo_domain,
    "role_account": _email_role,
    "placeholder": _email_placeholder,
    "shared_office": _email_shared,
}
