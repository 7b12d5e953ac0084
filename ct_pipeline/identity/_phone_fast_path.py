"""Indian numbers in the common 10-digit formats, decided without calling `phonenumbers` per value.

Why the answers equal the library's, for region IN and a value that is at most
`MAX_FAST_PATH_CHARS` long, made only of ASCII digits, spaces, '(', ')', '.', '-' and at most one
'+' that comes before every digit:

1. Parsing. The library skips leading characters until the first digit or '+', trims trailing
   punctuation, finds no extension (every extension form needs a letter, '#', ',' or ';'), no
   RFC 3966 part and fewer than three letters, and keeps only the digits. Let NSN be the last
   ten digits, starting with a digit d of `leading_digits()`: India's general pattern matches
   every 10-digit string starting d and no 11-digit string starting 0d. Then these digit strings
   all parse to country code 91 and national number NSN:
   - '+' then 91 NSN: 9 is no country code, 91 is India's only code, and the national prefix 0
     cannot be stripped from NSN;
   - 0091 NSN: 00 is India's international prefix and is followed by 9, then as above;
   - 91 NSN without '+': the general pattern matches no 12-digit string starting 91 and does
     match NSN, so the library strips 91;
   - 0 NSN: the general pattern does not match it, so the national prefix 0 is stripped, and
     10 digits is a possible length;
   - NSN alone: it matches the general pattern, so the library does not strip a leading 91.
   `_facts_hold` checks each metadata fact this relies on before the table is used; if one
   fails, nothing is decided here and every value goes to the library.
2. Validity and type. `is_valid_number` and `number_type` for country code 91 depend only on
   whether NSN matches each description of India's metadata (general, premium rate, toll free,
   shared cost, VoIP, personal, pager, UAN, voicemail, fixed line, mobile) at length 10. For each
   5-digit prefix, `_verdict` proves a description matches every completion or none of them. The
   library is then asked once per distinct combination of verdicts; a prefix where some
   description depends on later digits stays undecided and its values go to the library.
"""

from __future__ import annotations

import functools
import logging
import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc
from phonenumbers import PhoneMetadata, PhoneNumber
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

logger = logging.getLogger(__name__)

FAST_PATH_REGION = "IN"
COUNTRY_CODE = 91
NATIONAL_DIGITS = 10
PREFIX_DIGITS = 5
# Well under the library's 250-character limit on input, above which it refuses to parse.
MAX_FAST_PATH_CHARS = 64

UNDECIDED = -2
INVALID = -1
# Building a foreign region's table (11-33 ms) costs about as much as this many library
# validity checks (3-8 microseconds each), measured for US, GB, AE and SG with phonenumbers 9.0.
VALUES_WORTH_A_TABLE = 4_000

# A leading 0 would be read as a trunk or international prefix.
_CANDIDATE_LEADING_DIGITS = "123456789"
# What may come before the national number once separators are dropped: the five formats.
_HEADS = ("", "0", str(COUNTRY_CODE), f"+{COUNTRY_CODE}", f"00{COUNTRY_CODE}")
_LONGEST_HEAD = max(len(head) for head in _HEADS)
_LONGEST_FORMAT = NATIONAL_DIGITS + _LONGEST_HEAD
_SEPARATOR_BYTES = np.zeros(256, dtype=bool)
_SEPARATOR_BYTES[np.frombuffer(b" ().-", dtype=np.uint8)] = True
_ZERO, _NINE = ord("0"), ord("9")
_PLACE_VALUES = 10 ** np.arange(NATIONAL_DIGITS - 1, -1, -1, dtype=np.int64)
# Descriptions consulted by the library's number-type check, in its order.
_DESCRIPTIONS = (
    "general_desc",
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
    "mobile",
)
# Stand-ins for "a digit we have not looked at" when testing a prefix against a pattern.
_ANY_DIGIT = "#"
_SOME_DIGIT = "%"
_ALL, _NONE, _DEPENDS = 1, 0, -1
# type_table's tables by region, built on first use.
_type_tables: dict[str, np.ndarray | None] = {}
# 10-digit numbers `valid_for_region` asked the library about, by region, while it had no table.
_checked_without_table: Counter[str] = Counter()


@dataclass(frozen=True)
class FastPathResult:
    """Aligned with the values: which were decided, and the library's answer for those.

    `national_number` is the 10-digit national number (0 where undecided), `national_digits`
    the same as ASCII bytes, one row per value; `written_as_national`
    marks values that are the bare national number (no '+', international or trunk prefix).
    """

    decided: np.ndarray
    library_type: np.ndarray
    national_number: np.ndarray
    national_digits: np.ndarray
    written_as_national: np.ndarray


def decide(values: pa.StringArray | pa.LargeStringArray) -> FastPathResult:
    """Decide the values whose shape and prefix allow it; the others stay undecided.

    Works on the UTF-8 bytes of the Arrow array with numpy: separators are ASCII, so dropping
    them leaves valid UTF-8, and any byte that is not an ASCII digit, '+' or a separator makes
    the value fall outside the five formats.
    """
    count = len(values)
    table = prefix_table()
    library_type = np.full(count, UNDECIDED, dtype=np.int16)
    national = np.zeros(count, dtype=np.int64)
    if table is None or count == 0:
        nothing = np.zeros(count, dtype=bool)
        digits = np.zeros((count, NATIONAL_DIGITS), dtype=np.uint8)
        return FastPathResult(nothing, library_type, national, digits, nothing)

    compact, offsets = _drop_separators(values)
    starts, ends = offsets[:-1], offsets[1:]
    raw_offsets = _offsets(values)
    lengths = ends - starts
    present = pc.is_valid(values).to_numpy(zero_copy_only=False)
    within = (raw_offsets[1:] - raw_offsets[:-1]) <= MAX_FAST_PATH_CHARS
    shaped = np.flatnonzero(
        present & within & (lengths >= NATIONAL_DIGITS) & (lengths <= _LONGEST_FORMAT)
    )

    tail = compact[ends[shaped, None] - NATIONAL_DIGITS + np.arange(NATIONAL_DIGITS)]
    digits_ok = ((tail >= _ZERO) & (tail <= _NINE)).all(axis=1)
    digits_ok &= _leading_bytes()[tail[:, 0]]
    head_length = lengths[shaped] - NATIONAL_DIGITS
    head_index = np.minimum(starts[shaped, None] + np.arange(_LONGEST_HEAD), len(compact) - 1)
    head = compact[head_index] if len(compact) else np.zeros((0, _LONGEST_HEAD), np.uint8)
    head_ok = np.zeros(len(shaped), dtype=bool)
    for prefix in _HEADS:
        expected = np.frombuffer(prefix.encode(), dtype=np.uint8)
        matches = (head[:, : len(prefix)] == expected).all(axis=1)
        head_ok |= (head_length == len(prefix)) & matches

    accepted = shaped[digits_ok & head_ok]
    numbers = (tail[digits_ok & head_ok] - _ZERO).astype(np.int64) @ _PLACE_VALUES
    national[accepted] = numbers
    national_digits = np.zeros((count, NATIONAL_DIGITS), dtype=np.uint8)
    national_digits[accepted] = tail[digits_ok & head_ok]
    library_type[accepted] = table[numbers // 10 ** (NATIONAL_DIGITS - PREFIX_DIGITS)]
    decided = library_type != UNDECIDED
    bare = np.zeros(count, dtype=bool)
    bare[accepted] = head_length[digits_ok & head_ok] == 0
    return FastPathResult(decided, library_type, national, national_digits, decided & bare)


@functools.cache
def _leading_bytes() -> np.ndarray:
    """A lookup over byte values: True for the ASCII digits in `leading_digits()`."""
    lookup = np.zeros(256, dtype=bool)
    lookup[np.frombuffer(leading_digits().encode(), dtype=np.uint8)] = True
    return lookup


def _offsets(values: pa.StringArray | pa.LargeStringArray) -> np.ndarray:
    """The value offsets of a (possibly sliced) Arrow string array, as int64."""
    width = np.int64 if pa.types.is_large_string(values.type) else np.int32
    raw = np.frombuffer(values.buffers()[1], dtype=width)
    return raw[values.offset : values.offset + len(values) + 1].astype(np.int64)


def _drop_separators(
    values: pa.StringArray | pa.LargeStringArray,
) -> tuple[np.ndarray, np.ndarray]:
    """The bytes of all values with separator bytes removed, and the new offsets."""
    offsets = _offsets(values)
    buffer = values.buffers()[2]
    data = np.frombuffer(buffer, dtype=np.uint8) if buffer is not None else np.zeros(0, np.uint8)
    data = data[offsets[0] : offsets[-1]]
    keep = ~_SEPARATOR_BYTES[data]
    kept_before = np.empty(len(keep) + 1, dtype=np.int32)
    kept_before[0] = 0
    np.cumsum(keep, dtype=np.int32, out=kept_before[1:])
    return data[keep], kept_before[offsets - offsets[0]].astype(np.int64)


def prefix_table() -> np.ndarray | None:
    """India's table when the fast path's parsing argument holds, else None."""
    metadata = PhoneMetadata.metadata_for_region(FAST_PATH_REGION)
    try:
        usable = metadata is not None and _facts_hold(metadata)
    except ValueError:
        usable = False
    if not usable:
        logger.warning("phone fast path disabled: India's numbering metadata changed shape")
        return None
    return type_table(FAST_PATH_REGION)


def valid_for_region(national: np.ndarray, region: str) -> np.ndarray:
    """Whether each national number (digit strings) is valid for `region`, as
    `is_valid_number_for_region` says. Distinct 10-digit numbers are looked up in the region's
    table when it is built already or when they, with those asked of the library in earlier
    calls, are enough to pay for building it (`VALUES_WORTH_A_TABLE`); the others are asked of
    the library."""
    region = region.upper()
    metadata = PhoneMetadata.metadata_for_region(region)
    if metadata is None or not len(national):
        return np.zeros(len(national), dtype=bool)
    texts, position = np.unique(np.asarray(national, dtype=str), return_inverse=True)
    verdict = np.full(len(texts), UNDECIDED, dtype=np.int16)
    tabled = (np.char.str_len(texts) == NATIONAL_DIGITS) & ~np.char.startswith(texts, "0")
    _checked_without_table[region] += int(tabled.sum())
    worth_a_table = _checked_without_table[region] >= VALUES_WORTH_A_TABLE
    table = type_table(region) if worth_a_table or region in _type_tables else None
    if table is not None and tabled.any():
        prefixes = texts[tabled].astype(f"U{PREFIX_DIGITS}").astype(np.int64)
        verdict[tabled] = table[prefixes]
    for index in np.flatnonzero(verdict == UNDECIDED):
        number = PhoneNumber(country_code=metadata.country_code, national_number=int(texts[index]))
        verdict[index] = 0 if phonenumbers.is_valid_number_for_region(number, region) else INVALID
    return (verdict >= 0)[position.ravel()]


def type_table(region: str) -> np.ndarray | None:
    """The library's type (or INVALID, or UNDECIDED) for each 5-digit prefix of a 10-digit
    national number of `region`; None when a metadata pattern uses unsupported syntax. Built
    once per process."""
    if region not in _type_tables:
        _type_tables[region] = _build_type_table(region)
    return _type_tables[region]


def _build_type_table(region: str) -> np.ndarray | None:
    metadata = PhoneMetadata.metadata_for_region(region)
    if metadata is None:
        return None
    try:
        verdicts = np.column_stack(
            [_description_verdicts(getattr(metadata, name)) for name in _DESCRIPTIONS]
        )
    except ValueError:
        logger.warning("phone prefix table for %s skipped: unsupported pattern syntax", region)
        return None
    # A national number with a leading zero is not an integer of its own length: left undecided.
    numbers = np.arange(10 ** (PREFIX_DIGITS - 1), 10**PREFIX_DIGITS)
    settled = numbers[(verdicts[numbers] != _DEPENDS).all(axis=1)]
    representative, group = distinct_rows(verdicts[settled])
    answers = np.array(
        [
            _library_type(metadata.country_code, region, int(prefix))
            for prefix in settled[representative]
        ],
        dtype=np.int16,
    )
    table = np.full(10**PREFIX_DIGITS, UNDECIDED, dtype=np.int16)
    table[settled] = answers[group]
    return table


def distinct_rows(verdicts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For settled verdict rows (each entry _ALL or _NONE): the position of one row of each
    distinct combination, and for every row the number of its combination."""
    if not len(verdicts):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    packed = np.ascontiguousarray(np.packbits(verdicts == _ALL, axis=1))
    keys = packed.view(np.dtype((np.void, packed.shape[1]))).ravel()
    _, representative, group = np.unique(keys, return_index=True, return_inverse=True)
    return representative, group.ravel()


def _library_type(country_code: int, region: str, prefix: int) -> int:
    """The library's verdict on a representative national number with this prefix."""
    number = PhoneNumber(
        country_code=country_code,
        national_number=prefix * 10 ** (NATIONAL_DIGITS - PREFIX_DIGITS),
    )
    if not phonenumbers.is_valid_number_for_region(number, region):
        return INVALID
    return int(phonenumbers.number_type(number))


def _facts_hold(metadata: PhoneMetadata) -> bool:
    """Whether India's metadata still has every property the parsing argument relies on."""
    general = metadata.general_desc
    cc = pd.Series([str(COUNTRY_CODE)], dtype="str")
    return bool(
        metadata.country_code == COUNTRY_CODE
        and metadata.international_prefix == "00"
        and metadata.national_prefix_for_parsing == "0"
        and not metadata.national_prefix_transform_rule
        and tuple(COUNTRY_CODE_TO_REGION_CODE.get(COUNTRY_CODE, ())) == (FAST_PATH_REGION,)
        and 9 not in COUNTRY_CODE_TO_REGION_CODE
        and NATIONAL_DIGITS in general.possible_length
        and NATIONAL_DIGITS not in general.possible_length_local_only
        and (_verdict(general.national_number_pattern, cc, 12) == _NONE).all()
        and len(leading_digits())
    )


@functools.cache
def leading_digits() -> str:
    """First digits of a national number the parsing argument covers: those d for which India's
    general pattern matches every 10-digit number starting d and no 11-digit one starting 0d."""
    metadata = PhoneMetadata.metadata_for_region(FAST_PATH_REGION)
    if metadata is None:
        return ""
    pattern = metadata.general_desc.national_number_pattern
    digits = pd.Series(list(_CANDIDATE_LEADING_DIGITS), dtype="str")
    try:
        every = _verdict(pattern, digits, NATIONAL_DIGITS) == _ALL
        no_trunk_reading = _verdict(pattern, "0" + digits, NATIONAL_DIGITS + 1) == _NONE
    except ValueError:
        return ""
    return "".join(digits[every & no_trunk_reading])


def _description_verdicts(description: object) -> np.ndarray:
    """`_verdict` of one metadata description for every 5-digit prefix (by its value) of a
    10-digit national number, as the library checks it.

    Worked out digit by digit: a prefix whose verdict is settled (all or none) passes it to
    every longer prefix, so only the prefixes below an undecided one are tried.
    """
    verdicts = np.full(10**PREFIX_DIGITS, _NONE, dtype=np.int8)
    if description is None or not description.national_number_pattern:
        return verdicts
    lengths = description.possible_length
    if lengths and NATIONAL_DIGITS not in lengths:
        return verdicts
    pattern = description.national_number_pattern
    prefixes = np.arange(1, 10, dtype=np.int64)
    for digits in range(1, PREFIX_DIGITS + 1):
        verdict = _verdict(pattern, pa.array(prefixes.astype(str)), NATIONAL_DIGITS)
        span = 10 ** (PREFIX_DIGITS - digits)
        settled = verdict != _DEPENDS if digits < PREFIX_DIGITS else np.ones(len(verdict), bool)
        covered = (prefixes[settled, None] * span + np.arange(span)).ravel()
        verdicts[covered] = np.repeat(verdict[settled], span)
        prefixes = (prefixes[~settled, None] * 10 + np.arange(10)).ravel()
        if not len(prefixes):
            break
    return verdicts


def _verdict(
    pattern: str, prefixes: pa.Array | pd.Series, length: int, *, whole: bool = True
) -> np.ndarray:
    """For each prefix: does `pattern` match all, none, or only some digit strings of `length`
    that start with it? With `whole=False`, a match need only start the string (`re.match`).

    All: the pattern with `_ANY_DIGIT` added only where it accepts every digit matches the prefix
    followed by `_ANY_DIGIT`s, so the same match path accepts any completion. None: the pattern
    with `_SOME_DIGIT` added wherever it accepts at least one digit does not match the prefix
    followed by `_SOME_DIGIT`s, so no completion can have a match path either.
    """
    if isinstance(prefixes, pd.Series):
        prefixes = pa.array(prefixes.astype("str").array)
    end = "$" if whole else ""
    every = pc.match_substring_regex(
        pc.utf8_rpad(prefixes, length, _ANY_DIGIT),
        f"^(?:{_widen(pattern, every_digit_only=True)}){end}",
    )
    some = pc.match_substring_regex(
        pc.utf8_rpad(prefixes, length, _SOME_DIGIT),
        f"^(?:{_widen(pattern, every_digit_only=False)}){end}",
    )
    every = every.to_numpy(zero_copy_only=False)
    some = some.to_numpy(zero_copy_only=False)
    return np.where(every, _ALL, np.where(some, _DEPENDS, _NONE)).astype(np.int8)


@functools.cache
def _widen(pattern: str, every_digit_only: bool) -> str:
    """Rewrite a metadata pattern so a stand-in character matches where digits do.

    With `every_digit_only`, `_ANY_DIGIT` is accepted only by `\\d` and classes holding all ten
    digits; otherwise `_SOME_DIGIT` is accepted by every literal digit, class and `\\d`. Metadata
    patterns use digits, `\\d`, classes, groups, alternation and counted repetition; anything
    else raises ValueError, which disables the fast path rather than risk a wrong answer.
    """
    stand_in = _ANY_DIGIT if every_digit_only else _SOME_DIGIT
    widened: list[str] = []
    position = 0
    while position < len(pattern):
        char = pattern[position]
        if pattern.startswith("\\d", position):
            widened.append(f"[0-9{stand_in}]")
            position += 2
        elif char == "[":
            end = pattern.index("]", position)
            members = pattern[position + 1 : end]
            if not members or members[0] == "^" or "\\" in members:
                raise ValueError(f"unsupported character class in metadata pattern: [{members}]")
            add = stand_in if (_covers_every_digit(members) or not every_digit_only) else ""
            widened.append(f"[{members}{add}]")
            position = end + 1
        elif char == "{":
            end = pattern.index("}", position)
            widened.append(pattern[position : end + 1])
            position = end + 1
        elif char.isdigit() and char.isascii():
            widened.append(char if every_digit_only else f"[{char}{stand_in}]")
            position += 1
        elif pattern.startswith("(?:", position):
            widened.append("(?:")
            position += 3
        elif char in "()|?*+":
            widened.append(char)
            position += 1
        else:
            raise ValueError(f"unsupported syntax in metadata pattern at {position}: {char!r}")
    return "".join(widened)


@functools.cache
def _covers_every_digit(members: str) -> bool:
    """Whether the character class `[members]` accepts each of the ten digits."""
    return all(re.fullmatch(f"[{members}]", digit) for digit in "0123456789")
