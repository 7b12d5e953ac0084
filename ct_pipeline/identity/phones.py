"""Phone numbers to E.164, with the number's type and the risk of using it as an identity.

The answer for every value is the one Google's libphonenumber (the `phonenumbers` package) gives:
`parse(value, region)`, kept when `is_valid_number`, formatted as E.164. Calling the library once
per value costs about 16 seconds per million, so the common Indian formats are decided by a
vectorised fast path whose answers are proven equal to the library's (the argument is in
`_phone_fast_path`); of the distinct values left, those written with '+' and a country code are
decided per prefix (`_international`), and the rest go through the library once each.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc
from phonenumbers import NumberParseException, PhoneNumberFormat

from ct_pipeline.identity import _international, _phone_fast_path
from ct_pipeline.identity._text import as_text

# `number_type` values, in the order of their codes.
MOBILE = "mobile"
FIXED_LINE = "fixed_line"
FIXED_LINE_OR_MOBILE = "fixed_line_or_mobile"
TOLL_FREE = "toll_free"
OTHER = "other"
INVALID = "invalid"
NUMBER_TYPES = (MOBILE, FIXED_LINE, FIXED_LINE_OR_MOBILE, TOLL_FREE, OTHER, INVALID)

# `risk` values, most severe first: a value gets the first that applies.
PLACEHOLDER = "placeholder"
LANDLINE_IN_MOBILE_FIELD = "landline_in_mobile_field"
EXTENSION_DROPPED = "extension_dropped"
NO_PLUS_FOREIGN_POSSIBLE = "no_plus_foreign_possible"
PHONE_RISKS = (PLACEHOLDER, LANDLINE_IN_MOBILE_FIELD, EXTENSION_DROPPED, NO_PLUS_FOREIGN_POSSIBLE)

# Regions whose numbers are often saved without their country code in an Indian CRM.
DEFAULT_FOREIGN_REGIONS = ("US", "GB", "AE", "SG")

# National numbers of these lengths are compared with the placeholder list.
PLACEHOLDER_MIN_DIGITS = 6
PLACEHOLDER_MAX_DIGITS = 15

_TYPE_CODE = {name: code for code, name in enumerate(NUMBER_TYPES)}
_LIBRARY_TYPE_NAMES = {
    phonenumbers.PhoneNumberType.MOBILE: MOBILE,
    phonenumbers.PhoneNumberType.FIXED_LINE: FIXED_LINE,
    phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE: FIXED_LINE_OR_MOBILE,
    phonenumbers.PhoneNumberType.TOLL_FREE: TOLL_FREE,
}
_NOT_MOBILE_CODES = (_TYPE_CODE[FIXED_LINE], _TYPE_CODE[TOLL_FREE], _TYPE_CODE[OTHER])
_FOREIGN_CHECKED_CODES = (*_NOT_MOBILE_CODES, _TYPE_CODE[FIXED_LINE_OR_MOBILE])
_NO_CODE = -1
_PLACEHOLDER_CODE = PHONE_RISKS.index(PLACEHOLDER)
_E164_PREFIX = f"+{_phone_fast_path.COUNTRY_CODE}"
# ' ext. 12', ' extn 12', ' x12': forms of the library's explicit and ambiguous extension labels.
_EXTENSION = r"^(?P<number>.*[0-9]) +(?:[Ee][Xx][Tt][Nn]?\.?|[Xx]) *[0-9]{1,6}$"
_FULL_WIDTH = str.maketrans("０１２３４５６７８９＋", "0123456789+")


@dataclass(frozen=True)
class PhoneOptions:
    """How to read one phone column: its default region, whether it is meant to hold mobile
    numbers (Zoho's `Mobile`), and the regions tried for `no_plus_foreign_possible`."""

    region: str = "IN"
    mobile_field: bool = False
    foreign_regions: tuple[str, ...] = DEFAULT_FOREIGN_REGIONS


def normalize_phones(
    values: pd.Series,
    region: str = "IN",
    *,
    mobile_field: bool = False,
    foreign_regions: Iterable[str] = DEFAULT_FOREIGN_REGIONS,
) -> pd.DataFrame:
    """Normalise phone values to E.164; the result is index-aligned with `values`.

    Columns:
    - `e164` (str): what `phonenumbers` gives for `parse(value, region)` when `is_valid_number`,
      as E.164; missing when the value is missing or blank, does not parse, or is not valid.
      A value that is not a string is read as `str(value)`.
    - `number_type` (categorical): for a valid number `mobile`, `fixed_line`,
      `fixed_line_or_mobile` (the numbering plan cannot tell), `toll_free` or `other` (premium
      rate, shared cost, VoIP, personal, pager, UAN, voicemail); `invalid` for a non-blank value
      without a valid number; missing for a missing or blank value.
    - `risk` (categorical): missing, or the first that applies of
      `placeholder`: the national number is a digit or a pair of digits repeated, or a run of
      consecutive digits (9999999999, 9898989898, 1234567890, 9876543210); set even when the
      number is invalid, so that a review can say "placeholder" rather than "invalid";
      `landline_in_mobile_field`: only with `mobile_field=True`, a valid number that is fixed
      line, toll free or other (not `mobile` and not `fixed_line_or_mobile`);
      `extension_dropped`: the value carried an extension, which E.164 cannot hold;
      `no_plus_foreign_possible`: written as a bare national number (no '+', international or
      trunk prefix), valid but not a mobile here, and valid as written in one of
      `foreign_regions` (`is_valid_number_for_region`): 612 345 6789 is both a Patna landline
      and a Minneapolis number. Mobiles are not checked: most Indian mobile numbers are also
      valid North American numbers, so the flag would carry no signal.
    """
    options = PhoneOptions(region, mobile_field, tuple(foreign_regions))
    text = as_text(values)
    arrow_values = pa.array(text.array)
    if isinstance(arrow_values, pa.ChunkedArray):
        arrow_values = arrow_values.combine_chunks()
    fast_input = _with_ascii_digits(arrow_values)
    count = len(text)
    e164: pa.Array = pa.nulls(count, pa.string())
    type_code = np.full(count, _NO_CODE, dtype=np.int8)
    risk_code = np.full(count, _NO_CODE, dtype=np.int8)

    decided = np.zeros(count, dtype=bool)
    if options.region.upper() == _phone_fast_path.FAST_PATH_REGION:
        fast, extension = _decide_fast(fast_input)
        decided = fast.decided
        type_code[decided] = _from_library_types(fast.library_type[decided])
        valid = decided & (fast.library_type >= 0)
        e164 = _e164_strings(fast.national_digits, valid)
        risk_code[valid & extension] = PHONE_RISKS.index(EXTENSION_DROPPED)
        _flag_fast_risks(fast, type_code, risk_code, options)

    undecided = np.flatnonzero(~decided & pc.is_valid(arrow_values).to_numpy(zero_copy_only=False))
    rest = undecided[text.iloc[undecided].str.strip().str.len().to_numpy() > 0]
    if len(rest):
        rest_e164 = _normalize_rest(text.iloc[rest], type_code, risk_code, rest, options)
        rest_mask = np.zeros(count, dtype=bool)
        rest_mask[rest] = True
        e164 = pc.replace_with_mask(e164, pa.array(rest_mask), rest_e164)

    if options.mobile_field:
        landline = np.isin(type_code, _NOT_MOBILE_CODES) & (risk_code != _PLACEHOLDER_CODE)
        risk_code[landline] = PHONE_RISKS.index(LANDLINE_IN_MOBILE_FIELD)
    return pd.DataFrame(
        {
            "e164": pd.array(e164, dtype="str"),
            "number_type": pd.Categorical.from_codes(type_code, categories=list(NUMBER_TYPES)),
            "risk": pd.Categorical.from_codes(risk_code, categories=list(PHONE_RISKS)),
        },
        index=values.index,
    )


def _decide_fast(
    values: pa.Array,
) -> tuple[_phone_fast_path.FastPathResult, np.ndarray]:
    """The fast path, also for values ending in an extension such as ' ext. 12'.

    Of the library's extension forms only `_EXTENSION` is handled: the number ends with a digit,
    so the library's end-anchored extension pattern can first match at the spaces before the
    label (no form starts with a digit), and what it keeps before them is the number itself.
    """
    fast = _phone_fast_path.decide(values)
    extension = np.zeros(len(values), dtype=bool)
    candidates = np.flatnonzero(~fast.decided & pc.is_valid(values).to_numpy(zero_copy_only=False))
    if not len(candidates):
        return fast, extension
    parts = pc.extract_regex(values.take(candidates), _EXTENSION).field("number")
    matched = pc.is_valid(parts).to_numpy(zero_copy_only=False)
    if not matched.any():
        return fast, extension
    numbers = _phone_fast_path.decide(parts.filter(pa.array(matched)))
    positions = candidates[matched][numbers.decided]
    fast.decided[positions] = True
    fast.library_type[positions] = numbers.library_type[numbers.decided]
    fast.national_number[positions] = numbers.national_number[numbers.decided]
    fast.national_digits[positions] = numbers.national_digits[numbers.decided]
    extension[positions] = True
    return fast, extension


def _with_ascii_digits(values: pa.StringArray) -> pa.StringArray:
    """Values with full-width digits and plus signs written in ASCII.

    The library reads any Unicode decimal digit as its ASCII digit and '＋' as '+' at every step
    (its patterns use Unicode `\\d` and both plus signs), so the fast path may decide the ASCII
    form in place of the original.
    """
    non_ascii = pc.invert(pc.fill_null(pc.string_is_ascii(values), True))
    positions = np.flatnonzero(non_ascii.to_numpy(zero_copy_only=False))
    if not len(positions):
        return values
    translated = [value.translate(_FULL_WIDTH) for value in values.take(positions).to_pylist()]
    return pc.replace_with_mask(values, non_ascii, pa.array(translated, type=values.type))


def _flag_fast_risks(
    fast: _phone_fast_path.FastPathResult,
    type_code: np.ndarray,
    risk_code: np.ndarray,
    options: PhoneOptions,
) -> None:
    """Placeholder and foreign-number risks for the values the fast path decided."""
    known = _PLACEHOLDER_NATIONAL_NUMBERS
    slot = np.minimum(np.searchsorted(known, fast.national_number), len(known) - 1)
    placeholder = fast.decided & (known[slot] == fast.national_number)
    risk_code[placeholder] = _PLACEHOLDER_CODE

    candidates = np.flatnonzero(
        fast.written_as_national & np.isin(type_code, _FOREIGN_CHECKED_CODES) & ~placeholder
    )
    if len(candidates):
        national = fast.national_number[candidates].astype(str)
        abroad = _valid_abroad(national, options)
        risk_code[candidates[abroad]] = PHONE_RISKS.index(NO_PLUS_FOREIGN_POSSIBLE)


def _normalize_rest(
    values: pd.Series,
    type_code: np.ndarray,
    risk_code: np.ndarray,
    positions: np.ndarray,
    options: PhoneOptions,
) -> pa.Array:
    """Each distinct value the fast path left goes through the library once.

    Fills `type_code` and `risk_code` at `positions`; returns the E.164 strings in order.
    """
    # The library recompiles metadata patterns that fell out of the `re` module's small cache:
    # with numbers of many countries, most of its time. Its own cache keeps them all.
    phonenumbers.enable_pattern_cache()
    codes, uniques = pd.factorize(values)
    international = _international.decide(list(uniques), options.region)
    outcomes = [
        _library_outcome(value, options.region)
        if decided is None
        else _international_outcome(*decided)
        for value, decided in zip(uniques, international, strict=True)
    ]
    unique_e164 = pa.array([outcome.e164 for outcome in outcomes], type=pa.string())
    unique_type = np.array([outcome.type_code for outcome in outcomes], dtype=np.int8)
    unique_risk = np.array([outcome.risk_code for outcome in outcomes], dtype=np.int8)

    foreign = np.flatnonzero(
        np.array([outcome.written_as_national for outcome in outcomes], dtype=bool)
        & np.isin(unique_type, _FOREIGN_CHECKED_CODES)
        & (unique_risk == _NO_CODE)
    )
    if len(foreign):
        national = np.array([outcomes[index].national for index in foreign], dtype=str)
        abroad = _valid_abroad(national, options)
        unique_risk[foreign[abroad]] = PHONE_RISKS.index(NO_PLUS_FOREIGN_POSSIBLE)

    type_code[positions] = unique_type[codes]
    risk_code[positions] = unique_risk[codes]
    return unique_e164.take(pa.array(codes))


@dataclass(frozen=True)
class _LibraryOutcome:
    e164: str | None
    type_code: int
    risk_code: int
    national: str | None
    written_as_national: bool


def _international_outcome(library_type: int, code: str, national: str) -> _LibraryOutcome:
    """A value `_international` decided, in the shape of a library outcome."""
    placeholder = len(national) >= PLACEHOLDER_MIN_DIGITS and national in _PLACEHOLDER_SET
    risk = _PLACEHOLDER_CODE if placeholder else _NO_CODE
    if library_type < 0:
        return _LibraryOutcome(None, _TYPE_CODE[INVALID], risk, national, False)
    type_code = _TYPE_CODE[_LIBRARY_TYPE_NAMES.get(library_type, OTHER)]
    return _LibraryOutcome(f"+{code}{national}", type_code, risk, national, False)


def _library_outcome(value: str, region: str) -> _LibraryOutcome:
    """One value through `phonenumbers`, as the agreement defines it."""
    digits = "".join(char for char in value if char.isascii() and char.isdigit())
    try:
        number = phonenumbers.parse(value, region)
    except NumberParseException:
        risk = _PLACEHOLDER_CODE if digits in _PLACEHOLDER_SET else _NO_CODE
        return _LibraryOutcome(None, _TYPE_CODE[INVALID], risk, None, False)

    national = str(number.national_number)
    checked = national if len(national) >= PLACEHOLDER_MIN_DIGITS else digits
    risk = _PLACEHOLDER_CODE if checked in _PLACEHOLDER_SET else _NO_CODE
    # Every digit is in the national number: no '+', international, country or trunk prefix.
    written_as_national = digits == national
    if not phonenumbers.is_valid_number(number):
        return _LibraryOutcome(None, _TYPE_CODE[INVALID], risk, national, written_as_national)

    type_name = _LIBRARY_TYPE_NAMES.get(phonenumbers.number_type(number), OTHER)
    type_code = _TYPE_CODE[type_name]
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    if risk == _NO_CODE and number.extension:
        risk = PHONE_RISKS.index(EXTENSION_DROPPED)
    return _LibraryOutcome(e164, type_code, risk, national, written_as_national)


def _e164_strings(national_digits: np.ndarray, valid: np.ndarray) -> pa.StringArray:
    """'+91' and the national number's digit bytes where `valid`, null elsewhere."""
    digits = national_digits[valid]
    prefix = np.frombuffer(_E164_PREFIX.encode(), dtype=np.uint8)
    rows = np.empty((len(digits), len(prefix) + digits.shape[1]), dtype=np.uint8)
    rows[:, : len(prefix)] = prefix
    rows[:, len(prefix) :] = digits
    offsets = np.zeros(len(valid) + 1, dtype=np.int32)
    np.cumsum(np.where(valid, rows.shape[1], 0), out=offsets[1:])
    return pa.StringArray.from_buffers(
        len(valid),
        pa.py_buffer(offsets),
        pa.py_buffer(rows.tobytes()),
        pa.py_buffer(np.packbits(valid, bitorder="little")),
    )


def _from_library_types(library_types: np.ndarray) -> np.ndarray:
    """Map `phonenumbers.PhoneNumberType` values (negative: invalid) to our type codes."""
    codes = np.full(len(library_types), _TYPE_CODE[OTHER], dtype=np.int8)
    for library_type, name in _LIBRARY_TYPE_NAMES.items():
        codes[library_types == library_type] = _TYPE_CODE[name]
    codes[library_types < 0] = _TYPE_CODE[INVALID]
    return codes


def _valid_abroad(national: np.ndarray, options: PhoneOptions) -> np.ndarray:
    """Whether each national number is valid as written in one of the foreign regions."""
    abroad = np.zeros(len(national), dtype=bool)
    for region in options.foreign_regions:
        if region.upper() != options.region.upper():
            abroad |= _phone_fast_path.valid_for_region(national, region)
    return abroad


def _build_placeholders() -> frozenset[str]:
    """Digit strings people type when a form insists on a number they will not give."""
    numbers: set[str] = set()
    ascending = "0123456789" * 3
    descending = ascending[::-1]
    for length in range(PLACEHOLDER_MIN_DIGITS, PLACEHOLDER_MAX_DIGITS + 1):
        for first in "0123456789":
            for second in "0123456789":
                numbers.add(((first + second) * length)[:length])
        for start in range(10):
            numbers.add(ascending[start : start + length])
            numbers.add(descending[start : start + length])
    stripped = {number.lstrip("0") for number in numbers}
    return frozenset(
        number for number in numbers | stripped if len(number) >= PLACEHOLDER_MIN_DIGITS
    )


_PLACEHOLDER_SET = _build_placeholders()
_PLACEHOLDER_NATIONAL_NUMBERS = np.array(
    sorted(
        int(number)
        for number in _PLACEHOLDER_SET
        if len(number) == _phone_fast_path.NATIONAL_DIGITS and number[0] != "0"
    ),
    dtype=np.int64,
)
