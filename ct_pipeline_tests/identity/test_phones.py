"""normalize_phones agrees with the plain phonenumbers loop, fast path included."""

from __future__ import annotations

import math
import random
from unittest import mock

import numpy as np
import pandas as pd
import phonenumbers
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

from ct_pipeline.identity import _international, _phone_fast_path, normalize_phones
from ct_pipeline_tests.identity.helpers import mask

LIBRARY_TYPE_NAMES = {
    phonenumbers.PhoneNumberType.MOBILE: "mobile",
    phonenumbers.PhoneNumberType.FIXED_LINE: "fixed_line",
    phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE: "fixed_line_or_mobile",
    phonenumbers.PhoneNumberType.TOLL_FREE: "toll_free",
}
MESSY_CHARACTERS = list("0123456789 +-().#,;/xX") + [
    "ext",
    "ext. ",
    "tel:",
    "０",
    "９",
    "８",
    "＋",
    "٣",
    "a",
    "Z",
    "é",
    "\u00a0",
]
EXTENSIONS = ["", "", "", " ext. 12", " extn 7", " x123", "x9", " EXT 1234567", " ext", " # 5"]
INDIAN_PREFIXES = ["", "+91", "+91 ", "91", "0", "0091 ", "00 91", "+", "+0091", "00", "+910", "0 "]


def library_answer(value: object, region: str = "IN") -> tuple[str | None, str | None]:
    """The reference: (E.164 or None, our type name or None for blank) from the plain loop."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None, None
    text = value if isinstance(value, str) else str(value)
    if not text.strip():
        return None, None
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None, "invalid"
    if not phonenumbers.is_valid_number(number):
        return None, "invalid"
    type_name = LIBRARY_TYPE_NAMES.get(phonenumbers.number_type(number), "other")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), type_name


def disagreements(values: list[object], region: str = "IN") -> list[str]:
    """Masked descriptions of every value where normalize_phones and the library differ."""
    result = normalize_phones(pd.Series(values, dtype=object), region)
    got_e164s = result["e164"].astype(object).where(result["e164"].notna(), None).tolist()
    got_types = result["number_type"].astype(object).where(result["number_type"].notna(), None)
    problems = []
    for value, got_e164, got_type in zip(values, got_e164s, got_types.tolist(), strict=True):
        expected_e164, expected_type = library_answer(value, region)
        if (got_e164, got_type) != (expected_e164, expected_type):
            problems.append(
                f"{mask(str(value))}: got {mask(got_e164)}/{got_type}, "
                f"library {mask(expected_e164)}/{expected_type}"
            )
    return problems


def indian_number(draw: st.DrawFn) -> str:
    """A 10-digit national number, formatted the many ways people type it."""
    first = draw(st.sampled_from("01236789"))
    national = first + draw(st.text("0123456789", min_size=9, max_size=9))
    prefix = draw(st.sampled_from(INDIAN_PREFIXES))
    separators = draw(st.lists(st.sampled_from(["", "", "", " ", "-", ".", "(", ")"]), min_size=10))
    body = "".join(digit + sep for digit, sep in zip(national, separators, strict=False))
    lead = draw(st.sampled_from(["", " ", "(", "-"]))
    return lead + prefix + body + draw(st.sampled_from(EXTENSIONS))


@st.composite
def messy_strings(draw: st.DrawFn) -> str:
    """Digits, separators, plus signs, extension words, full-width digits, letters, unicode."""
    return "".join(draw(st.lists(st.sampled_from(MESSY_CHARACTERS), max_size=25)))


@st.composite
def indian_numbers(draw: st.DrawFn) -> str:
    return indian_number(draw)


@st.composite
def international_numbers(draw: st.DrawFn) -> str:
    """A country code from the library's list and some digits, with '+', 00 or neither."""
    code = draw(st.sampled_from(sorted(COUNTRY_CODE_TO_REGION_CODE)))
    national = draw(st.text("0123456789", min_size=1, max_size=16))
    lead = draw(st.sampled_from(["+", "+", "00", "", "+0", "++", " (+"]))
    separator = draw(st.sampled_from(["", " ", "-", ") "]))
    return f"{lead}{code}{separator}{national}"


def international_path(by_prefix: bool) -> mock._patch:
    """Numbers written with a country code decided by their prefixes' patterns every time, or
    left to the library every time, whatever deciding would cost."""
    return mock.patch.object(_international, "LIBRARY_CALL_COST", math.inf if by_prefix else 0.0)


@settings(max_examples=150, deadline=None)
@given(st.lists(international_numbers(), min_size=1, max_size=60), st.booleans())
def test_international_numbers_match_the_library(values: list[str], by_prefix: bool) -> None:
    with international_path(by_prefix):
        assert disagreements(values) == []


def test_numbers_of_many_countries_match_the_library_by_either_path() -> None:
    generator = random.Random(7)
    codes = sorted(COUNTRY_CODE_TO_REGION_CODE)
    values = [
        f"+{generator.choice(codes)} {generator.randrange(10**5, 10**11)}" for _ in range(3_000)
    ]
    for by_prefix in (True, False):
        with international_path(by_prefix):
            assert disagreements(values) == []


def test_prefixes_left_to_the_library_are_decided_once_their_values_keep_coming() -> None:
    # London numbers (+44 20 7946 ....): one prefix, checked against 4 regions' patterns.
    values = [f"+44 20 7946 {number:04d}" for number in range(100)]
    with (
        mock.patch.dict(_international._decided, clear=True),
        mock.patch.dict(_international._left_to_library, clear=True),
    ):
        first = _international.decide(values, "IN")
        calls = 1
        while _international.decide(values, "IN")[0] is None and calls < 20:
            calls += 1
        decided = _international.decide(values, "IN")

    assert first == [None] * len(values)
    assert 1 < calls < 20
    assert [answer[2] for answer in decided] == [value[4:].replace(" ", "") for value in values]
    assert disagreements(values) == []


@settings(max_examples=150, deadline=None)
@given(st.lists(messy_strings(), max_size=40))
def test_messy_strings_match_the_library(values: list[str]) -> None:
    assert disagreements(values) == []


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=20), max_size=30))
def test_arbitrary_unicode_matches_the_library(values: list[str]) -> None:
    assert disagreements(values) == []


@settings(max_examples=200, deadline=None)
@given(st.lists(indian_numbers(), min_size=1, max_size=60))
def test_indian_formats_on_the_fast_path_match_the_library(values: list[str]) -> None:
    assert disagreements(values) == []


@settings(max_examples=30, deadline=None)
@given(st.lists(indian_numbers(), min_size=1, max_size=30), st.sampled_from(["US", "GB", "AE"]))
def test_other_regions_match_the_library(values: list[str], region: str) -> None:
    assert disagreements(values, region) == []


@pytest.mark.parametrize(
    "value",
    [
        "098765 43210",
        "+91-98765-43210",
        "0091 98765 43210",
        "919876543210",
        "(080) 2345 6789",
        "+1 415 555 2671",
        "6502532222",
        "9999999999",
        "98765 43210 ext. 12",
        "+91 98123 45678 extn 123",
        "98123 45678 x12",
        "98123 45678x12",
        "98123 45678 X 1234567",
        "98123 45678 ext 12 ext 3",
        "９８７６５ ４３２１０",
        "+９１ ９８７６５４３２１０",
        "",
        "   ",
        None,
        float("nan"),
        9876543210,
        "6123456789",
        "16502532222",
        "98765432",
        "1800 123 4567",
    ],
)
def test_hand_written_indian_case_matches_the_library(value: object) -> None:
    assert disagreements([value]) == []


def test_every_fast_path_prefix_matches_the_library() -> None:
    table = _phone_fast_path.prefix_table()
    assert table is not None, "the fast path should be enabled for India's metadata"
    generator = random.Random(5)
    values = []
    for prefix in range(10_000, 100_000, 2):
        suffix = f"{generator.randrange(100_000):05d}"
        template = generator.choice(["{}", "+91 {}", "91{}", "0{}", "0091 {}"])
        values.append(template.format(f"{prefix}{suffix}"))
    assert disagreements(values) == []


@pytest.mark.parametrize("region", ["US", "GB", "AE", "SG"])
def test_validity_abroad_matches_the_library_by_table_and_without(region: str) -> None:
    generator = random.Random(region)
    code = phonenumbers.country_code_for_region(region)
    national = np.array(
        [f"{prefix}{generator.randrange(100_000):05d}" for prefix in range(10_000, 100_000, 7)]
    )
    expected = np.array(
        [
            phonenumbers.is_valid_number_for_region(
                phonenumbers.PhoneNumber(country_code=code, national_number=int(number)), region
            )
            for number in national
        ]
    )

    with (
        mock.patch.dict(_phone_fast_path._type_tables, clear=True),
        mock.patch.dict(_phone_fast_path._checked_without_table, clear=True),
    ):
        few = _phone_fast_path.valid_for_region(national[:500], region)
        assert region not in _phone_fast_path._type_tables
        # Asked again and again, the library checks add up to the price of the table.
        for _ in range(_phone_fast_path.VALUES_WORTH_A_TABLE // 500):
            again = _phone_fast_path.valid_for_region(national[:500], region)
        assert region in _phone_fast_path._type_tables
        many = _phone_fast_path.valid_for_region(national, region)

    assert (few == expected[:500]).all()
    assert (again == expected[:500]).all()
    assert (many == expected).all()


def test_fast_path_decides_every_indian_mobile_prefix() -> None:
    table = _phone_fast_path.prefix_table()
    assert table is not None
    assert _phone_fast_path.leading_digits() == "123456789"
    assert (table[60_000:] != _phone_fast_path.UNDECIDED).all()


def test_fast_path_rejects_a_plus_after_digits() -> None:
    values = pa.array(["98123+45678", "91+9812345678", "+91 98123 45678"])
    assert list(_phone_fast_path.decide(values).decided) == [False, False, True]


def test_result_is_aligned_with_the_input_index() -> None:
    values = pd.Series(["+91 98123 45678", None, "98123 45678"], index=[10, 20, 30])
    result = normalize_phones(values)
    assert list(result.index) == [10, 20, 30]
    assert list(result["e164"].fillna("-")) == ["+919812345678", "-", "+919812345678"]


def test_missing_and_blank_values_have_no_type() -> None:
    result = normalize_phones(pd.Series([None, "", "  ", np.nan], dtype=object))
    assert result["e164"].isna().all()
    assert result["number_type"].isna().all()


def test_unparseable_value_is_invalid() -> None:
    result = normalize_phones(pd.Series(["call me", "12"]))
    assert list(result["number_type"]) == ["invalid", "invalid"]


def test_fixed_line_in_a_mobile_field_is_flagged() -> None:
    result = normalize_phones(pd.Series(["(080) 2345 6789", "+91 98123 45678"]), mobile_field=True)
    assert result["risk"].iat[0] == "landline_in_mobile_field"
    assert pd.isna(result["risk"].iat[1])


def test_fixed_line_outside_a_mobile_field_is_not_flagged_as_landline() -> None:
    result = normalize_phones(pd.Series(["(080) 2345 6789"]))
    assert result["risk"].iat[0] != "landline_in_mobile_field"


@pytest.mark.parametrize("value", ["9999999999", "99999 99999", "+91 98989 89898", "1234567890"])
def test_placeholder_numbers_are_flagged(value: str) -> None:
    assert normalize_phones(pd.Series([value]))["risk"].iat[0] == "placeholder"


def test_dropped_extension_is_flagged() -> None:
    result = normalize_phones(pd.Series(["98123 45678 ext. 12"]))
    assert result["e164"].iat[0] == "+919812345678"
    assert result["risk"].iat[0] == "extension_dropped"


def test_indian_landline_that_is_a_valid_us_number_without_plus_is_flagged() -> None:
    result = normalize_phones(pd.Series(["6123456789"]))
    assert result["number_type"].iat[0] == "fixed_line"
    assert result["risk"].iat[0] == "no_plus_foreign_possible"


def test_foreign_check_can_be_turned_off() -> None:
    result = normalize_phones(pd.Series(["6123456789"]), foreign_regions=())
    assert pd.isna(result["risk"].iat[0])


def test_repeated_values_get_the_same_answer() -> None:
    result = normalize_phones(pd.Series(["98123 45678"] * 5 + ["+91 98123 45678"] * 5))
    assert result["e164"].nunique() == 1
    assert (result["number_type"] == "mobile").all()


def test_series_built_from_several_chunks_is_normalised() -> None:
    values = pd.concat([pd.Series(["98123 45678"]), pd.Series(["+91 98123 45677", None])])
    result = normalize_phones(values.reset_index(drop=True))
    assert result["e164"].fillna("-").tolist() == ["+919812345678", "+919812345677", "-"]
