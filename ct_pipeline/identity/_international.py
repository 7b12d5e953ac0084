"""Numbers written with '+' (or the default region's international prefix) and a country code,
decided without calling `phonenumbers.parse` once per value.

Why the answers equal the library's, for a value of at most `MAX_CHARS` ASCII characters made of
digits, the separators ' ().-' and one '+' before every digit (or, without '+', digits that start
with the default region's international prefix, when that prefix is a plain digit string):

1. Parsing. As in `_phone_fast_path`, the library keeps only the digits, finds no extension and
   strips the '+' (or the international prefix, which is followed by a non-zero digit). It then
   reads the country code CC as the shortest of the first 1-3 digits that is a known code, and
   the rest is the national number NSN. We require NSN to be 2-17 digits long, not to start
   with 0 (no Italian leading zero), CC not to be a non-geographic code, and the national prefix
   pattern of CC's main region to match no beginning of NSN (checked per prefix, below), so the
   library strips nothing more: the number is (CC, NSN) and its E.164 form is '+' CC NSN.
2. Validity and type depend only on whether NSN matches each description of each region of CC
   at its length, and, where a region of a shared code has leading digits, whether they match
   a beginning of NSN. For the first `PREFIX_DIGITS` digits of NSN, `_verdict` proves each of
   those answers is the same for every completion, and the library is asked once per distinct
   combination of answers. Anything left open goes to the library.

Checking a country code's patterns costs more than a few library calls, so a code and length
whose new prefixes would cost more to decide than their values cost the library is left to the
library (`_worth_deciding`): numbers of many countries, a few of each, are never slower than
asking the library for each distinct value.
"""

from __future__ import annotations

import functools
import re
from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np
import phonenumbers
import pyarrow as pa
from phonenumbers import PhoneMetadata, PhoneNumber
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

from ct_pipeline.identity import _phone_fast_path as fast_path

PREFIX_DIGITS = 5
MAX_CHARS = 64
# The library's bounds on a national significant number.
MIN_NATIONAL_DIGITS = 2
MAX_NATIONAL_DIGITS = 17
MAX_COUNTRY_CODE_DIGITS = 3
NON_GEOGRAPHIC_REGION = "001"

_SHAPE = re.compile(r"[ ().\-]*\+?[0-9 ().\-]*")
_SEPARATORS = re.compile(r"[ ().\-]")
_DESCRIPTIONS = fast_path._DESCRIPTIONS
_DEPENDS, _NONE = -1, 0
# Not in `_decided`: left to the library this time (`_worth_deciding`).
_LEFT = -3
# Rough costs in microseconds on one core, for `_worth_deciding` (measured with phonenumbers 9.0):
# one pattern checked (rewritten, then two Arrow regular expressions compiled and run), each
# prefix it is checked on, and one value through the library (parse, validity and type).
PATTERN_CHECK_COST = 250.0
PREFIX_CHECK_COST = 0.05
LIBRARY_CALL_COST = 35.0
# (country code, national length, prefix) -> library type, INVALID or UNDECIDED.
_decided: dict[tuple[int, int, str], int] = {}
# (country code, national length) -> values left to the library since its prefixes were last
# decided (`_worth_deciding`).
_left_to_library: Counter[tuple[int, int]] = Counter()


def decide(values: Sequence[str], region: str) -> list[tuple[int, str, str] | None]:
    """For each value: (library type or INVALID, country code, national number), or None when
    this path cannot decide it (or deciding it would cost more than the library, see
    `_worth_deciding`)."""
    international_prefix = _plain_international_prefix(region)
    parsed = [_split(value, international_prefix) for value in values]
    needed: defaultdict[tuple[int, int], set[str]] = defaultdict(set)
    waiting: Counter[tuple[int, int]] = Counter()
    for split in parsed:
        if split is not None:
            code, national = split
            key = (code, len(national), national[:PREFIX_DIGITS])
            if key not in _decided:
                needed[(code, len(national))].add(national[:PREFIX_DIGITS])
                waiting[(code, len(national))] += 1
    for (code, length), prefixes in needed.items():
        _left_to_library[(code, length)] += waiting[(code, length)]
        if _worth_deciding(code, len(prefixes), _left_to_library[(code, length)]):
            _decide_prefixes(code, length, sorted(prefixes))
            del _left_to_library[(code, length)]

    answers: list[tuple[int, str, str] | None] = []
    for split in parsed:
        if split is None:
            answers.append(None)
            continue
        code, national = split
        library_type = _decided.get((code, len(national), national[:PREFIX_DIGITS]), _LEFT)
        answers.append(
            None
            if library_type in (fast_path.UNDECIDED, _LEFT)
            else (library_type, str(code), national)
        )
    return answers


def _worth_deciding(code: int, prefixes: int, values: int) -> bool:
    """Whether checking the patterns for `prefixes` new prefixes of one country code and
    length would cost less than the library calls for the `values` that needed them, in this
    call and in earlier ones that left them to the library.

    Numbers from many countries, a few of each, would otherwise cost more than the plain loop:
    every country code brings dozens of patterns to check, for a handful of values. Counting
    the earlier calls too, values that keep coming back get their prefixes decided once the
    library time spent on them would have paid for it, so repeated calls are not left slow.
    """
    patterns = _pattern_count(code)
    cost = patterns * (PATTERN_CHECK_COST + prefixes * PREFIX_CHECK_COST)
    return cost < values * LIBRARY_CALL_COST


@functools.cache
def _pattern_count(code: int) -> int:
    """How many patterns `_decide_prefixes` checks for a country code."""
    count = 1
    for region in COUNTRY_CODE_TO_REGION_CODE[code]:
        metadata = PhoneMetadata.metadata_for_region(region)
        if metadata is None:
            continue
        count += metadata.leading_digits is not None
        count += sum(
            getattr(metadata, name) is not None
            and bool(getattr(metadata, name).national_number_pattern)
            for name in _DESCRIPTIONS
        )
    return count


def _plain_international_prefix(region: str) -> str | None:
    """The default region's international prefix when it is a plain digit string, like 00."""
    metadata = PhoneMetadata.metadata_for_region(region.upper())
    prefix = metadata.international_prefix if metadata is not None else None
    return prefix if prefix and prefix.isdigit() and prefix.isascii() else None


def _split(value: str, international_prefix: str | None) -> tuple[int, str] | None:
    """(country code, national number) when the value has a shape this path covers."""
    if len(value) > MAX_CHARS or not value.isascii() or not _SHAPE.fullmatch(value):
        return None
    compact = _SEPARATORS.sub("", value)
    if compact.startswith("+"):
        digits = compact[1:]
    elif international_prefix and compact.startswith(international_prefix):
        digits = compact[len(international_prefix) :]
    else:
        return None
    if not digits or digits[0] == "0":
        return None
    for size in range(1, MAX_COUNTRY_CODE_DIGITS + 1):
        code = int(digits[:size])
        if code in COUNTRY_CODE_TO_REGION_CODE:
            national = digits[size:]
            fits = MIN_NATIONAL_DIGITS <= len(national) <= MAX_NATIONAL_DIGITS
            geographic = NON_GEOGRAPHIC_REGION not in COUNTRY_CODE_TO_REGION_CODE[code]
            if fits and geographic and national[0] != "0":
                return code, national
            return None
    return None


def _decide_prefixes(code: int, length: int, prefixes: list[str]) -> None:
    """Fill `_decided` for these prefixes of national numbers of `length` digits under `code`."""
    regions = COUNTRY_CODE_TO_REGION_CODE[code]
    texts = pa.array(prefixes, type=pa.string())
    try:
        columns = [_national_prefix_verdicts(regions[0], texts, length)]
        for region in regions:
            metadata = PhoneMetadata.metadata_for_region(region)
            if metadata is None:
                columns.append(np.full(len(texts), _NONE, dtype=np.int8))
                continue
            if metadata.leading_digits is not None:
                columns.append(
                    fast_path._verdict(metadata.leading_digits, texts, length, whole=False)
                )
            for name in _DESCRIPTIONS:
                description = getattr(metadata, name)
                columns.append(_length_verdict(description, texts, length))
    except ValueError:
        for prefix in prefixes:
            _decided[(code, length, prefix)] = fast_path.UNDECIDED
        return

    verdicts = np.column_stack(columns)
    settled = (verdicts != _DEPENDS).all(axis=1) & (verdicts[:, 0] == _NONE)
    answers = np.full(len(prefixes), fast_path.UNDECIDED, dtype=np.int16)
    if settled.any():
        representative, group = fast_path.distinct_rows(verdicts[settled])
        settled_prefixes = [prefix for prefix, keep in zip(prefixes, settled, strict=True) if keep]
        oracle = [_library_type(code, settled_prefixes[index], length) for index in representative]
        answers[settled] = np.array(oracle, dtype=np.int16)[group]
    for prefix, answer in zip(prefixes, answers, strict=True):
        _decided[(code, length, prefix)] = int(answer)


def _national_prefix_verdicts(main_region: str, prefixes: pa.Array, length: int) -> np.ndarray:
    """Whether the main region's national prefix pattern matches a beginning of the number."""
    metadata = PhoneMetadata.metadata_for_region(main_region)
    pattern = metadata.national_prefix_for_parsing if metadata is not None else None
    if not pattern:
        return np.full(len(prefixes), _NONE, dtype=np.int8)
    return fast_path._verdict(pattern, prefixes, length, whole=False)


def _length_verdict(description: object, prefixes: pa.Array, length: int) -> np.ndarray:
    """A description's full-match verdict, as `_is_number_matching_desc` checks it."""
    if description is None or not description.national_number_pattern:
        return np.full(len(prefixes), _NONE, dtype=np.int8)
    if description.possible_length and length not in description.possible_length:
        return np.full(len(prefixes), _NONE, dtype=np.int8)
    return fast_path._verdict(description.national_number_pattern, prefixes, length)


def _library_type(code: int, prefix: str, length: int) -> int:
    """The library's verdict on a representative national number with this prefix."""
    number = PhoneNumber(country_code=code, national_number=int(prefix.ljust(length, "0")))
    if not phonenumbers.is_valid_number(number):
        return fast_path.INVALID
    return int(phonenumbers.number_type(number))
