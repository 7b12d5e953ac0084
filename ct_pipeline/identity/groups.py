"""Duplicate groups: CRM records (Contacts and Leads together) that share a phone or an email.

Records are linked through the normalised values they share and grouped as connected components
of a sparse record-value graph. Two guards keep one shared value from chaining strangers into a
group: placeholders and values held by more than `max_records_per_value` records do not link,
and a group larger than `max_group_size` is flagged for review instead of merged.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ct_pipeline.identity import emails, phones
from ct_pipeline.identity._text import as_text

SINGLE = "single"
MERGED = "merged"
OVERSIZED = "oversized"

CANONICAL_KEYS = ("module", "deals", "modified")
HASH_HEX_CHARS = 16


@dataclass(frozen=True)
class GroupingOptions:
    """How records are linked and which one of a group is canonical.

    Columns of the input: `id_column` (the Zoho record id), `module_column` (Contacts/Leads),
    `modified_column` (last modified time), `deals_column` (number of deals; optional),
    `identity_column` (the identity `choose_identity` chose; optional), and the raw or already
    normalised link columns `phone_columns` and `email_columns`.
    Guards: a value shared by more than `max_records_per_value` records, a phone placeholder
    and an email whose risk is in `unlinkable_email_risks` do not link; a group of more than
    `max_group_size` records is `oversized`: flagged, not merged.
    Canonical record: the first by `canonical_order` over `module` (earlier in
    `module_priority` first), `deals` (records with deals first) and `modified` (most recently
    modified first); ties go to the smallest id.
    `hash_key` salts the value hashes shown to reviewers.
    """

    id_column: str = "id"
    module_column: str = "module"
    modified_column: str = "Modified_Time"
    deals_column: str | None = "deal_count"
    identity_column: str | None = "identity"
    phone_columns: tuple[str, ...] = ("Mobile", "Phone")
    email_columns: tuple[str, ...] = ("Email",)
    region: str = "IN"
    max_records_per_value: int = 5
    max_group_size: int = 10
    module_priority: tuple[str, ...] = ("Contacts", "Leads")
    canonical_order: tuple[str, ...] = CANONICAL_KEYS
    unlinkable_email_risks: frozenset[str] = field(
        default_factory=lambda: frozenset({emails.PLACEHOLDER, emails.ROLE_ACCOUNT})
    )
    hash_key: bytes = b""

    def __post_init__(self) -> None:
        unknown = [key for key in self.canonical_order if key not in CANONICAL_KEYS]
        if unknown:
            raise ValueError(
                f"canonical_order has {unknown}; use keys from {', '.join(CANONICAL_KEYS)}"
            )
        if self.max_records_per_value < 2 or self.max_group_size < 2:
            raise ValueError("max_records_per_value and max_group_size must be at least 2")


@dataclass(frozen=True)
class DuplicateGroups:
    """The result of `find_duplicate_groups`.

    `records`, index-aligned with the input: `group_id`, `group_size`, `group_status`
    (`single`, `merged`, `oversized`), `is_canonical`, `canonical_id` (a record's own id when
    its group is oversized), `canonical_identity`, and `identity_collision` (held back: another
    canonical person would upload the same identity).
    `links`: one row per record and shared value that linked it: `group_id`, `record_id`,
    `field`, `value` (the normalised value: personal data, for this frame only),
    `value_masked` and `value_hash` (for display and logs).
    `suppressed`: values that did not link because too many records share them: `field`,
    `value_masked`, `value_hash`, `records`.
    `collisions`: one row per identity that several canonical people would upload:
    `identity_masked`, `identity_hash`, `canonical_ids` (a list), `people`.
    """

    records: pd.DataFrame
    links: pd.DataFrame
    suppressed: pd.DataFrame
    collisions: pd.DataFrame


def find_duplicate_groups(
    records: pd.DataFrame, options: GroupingOptions | None = None
) -> DuplicateGroups:
    """Group records that share a normalised phone or email, with the guards in `options`."""
    options = options or GroupingOptions()
    count = len(records)
    ids = _arrow_text(records[options.id_column])
    pairs = _link_values(records, options)

    holders = np.bincount(pairs.value_code, minlength=len(pairs.values))[pairs.value_code]
    linking = (holders >= 2) & (holders <= options.max_records_per_value)
    group = _components(count, pairs.record[linking], pairs.value_code[linking], len(pairs.values))
    group_count = int(group.max()) + 1 if count else 0
    size = np.bincount(group, minlength=group_count)[group]
    oversized = size > options.max_group_size
    status = np.where(size == 1, SINGLE, np.where(oversized, OVERSIZED, MERGED))

    order = _canonical_order(records, group, ids, options)
    ordered_group = group[order]
    first_in_group = np.ones(count, dtype=bool)
    first_in_group[1:] = ordered_group[1:] != ordered_group[:-1]
    canonical_of_group = np.empty(group_count, dtype=np.int64)
    canonical_of_group[ordered_group[first_in_group]] = order[first_in_group]
    canonical = np.where(oversized, np.arange(count), canonical_of_group[group])

    identity = _identities(records, options)
    canonical_identity = _group_identity(identity, group, order, oversized, group_count)
    colliding, collisions = _collisions(ids, canonical, canonical_identity, options)

    result = pd.DataFrame(
        {
            "group_id": group,
            "group_size": size,
            "group_status": pd.Categorical(status, categories=[SINGLE, MERGED, OVERSIZED]),
            "is_canonical": canonical == np.arange(count),
            "canonical_id": pd.array(ids.take(canonical), dtype="str"),
            "canonical_identity": pd.array(canonical_identity, dtype="str"),
            "identity_collision": colliding,
        },
        index=records.index,
    )
    links = _links(pairs, linking & (size[pairs.record] > 1), group, ids, options)
    suppressed = _suppressed(pairs, holders > options.max_records_per_value, holders, options)
    return DuplicateGroups(result, links, suppressed, collisions)


@dataclass(frozen=True)
class _Pairs:
    """Record-value memberships: parallel arrays, plus the distinct values and field names."""

    record: np.ndarray
    field_code: np.ndarray
    value_code: np.ndarray
    values: pa.Array
    fields: tuple[str, ...]


def _link_values(records: pd.DataFrame, options: GroupingOptions) -> _Pairs:
    """Every (record, field, normalised value) that may link, one per record and value."""
    fields = tuple(
        column for column in (*options.phone_columns, *options.email_columns) if column in records
    )
    record_parts, field_parts, value_parts = [], [], []
    for field_code, column in enumerate(fields):
        if column in options.phone_columns:
            normalised = phones.normalize_phones(
                records[column], options.region, foreign_regions=()
            )
            value = normalised["e164"]
            blocked = (normalised["risk"] == phones.PLACEHOLDER).to_numpy()
        else:
            normalised = emails.normalize_emails(records[column])
            value = normalised["email"]
            blocked = normalised["risk"].isin(options.unlinkable_email_risks).to_numpy()
        keep = np.flatnonzero(value.notna().to_numpy() & ~blocked)
        record_parts.append(keep)
        field_parts.append(np.full(len(keep), field_code, dtype=np.int8))
        value_parts.append(_arrow_text(value).take(keep).cast(pa.large_string()))

    if not fields:
        nothing = np.zeros(0, dtype=np.int64)
        return _Pairs(nothing, nothing.astype(np.int8), nothing, pa.array([], pa.string()), ())
    encoded = pa.concat_arrays(value_parts).dictionary_encode()
    record = np.concatenate(record_parts)
    value_code = encoded.indices.to_numpy().astype(np.int64)
    # Keep the first field a record holds a value in (Mobile before Phone).
    key = pd.Series(record * len(encoded.dictionary) + value_code)
    first = np.flatnonzero(~key.duplicated().to_numpy())
    return _Pairs(
        record[first],
        np.concatenate(field_parts)[first],
        value_code[first],
        encoded.dictionary,
        fields,
    )


def _components(
    count: int, record: np.ndarray, value_code: np.ndarray, value_count: int
) -> np.ndarray:
    """Connected components of the record-value graph, numbered from 0, for the records."""
    nodes = count + value_count
    graph = coo_matrix(
        (np.ones(len(record), dtype=np.int8), (record, count + value_code)), shape=(nodes, nodes)
    )
    _, labels = connected_components(graph.tocsr(), directed=False)
    group, _ = pd.factorize(labels[:count])
    return group.astype(np.int64)


def _canonical_order(
    records: pd.DataFrame, group: np.ndarray, ids: pa.Array, options: GroupingOptions
) -> np.ndarray:
    """Record positions sorted by group, then canonical first."""
    keys = {
        "module": _module_rank(records, options),
        "deals": -_has_deals(records, options).astype(np.int8),
        "modified": -_modified_ns(records, options),
    }
    id_rank = pc.rank(ids, sort_keys="ascending").to_numpy()
    # np.lexsort sorts by the last key first.
    sort_keys = [id_rank, *(keys[name] for name in reversed(options.canonical_order)), group]
    return np.lexsort(sort_keys)


def _module_rank(records: pd.DataFrame, options: GroupingOptions) -> np.ndarray:
    if options.module_column not in records:
        return np.zeros(len(records), dtype=np.int64)
    modules = _arrow_text(records[options.module_column])
    priority = pa.array(list(options.module_priority), type=modules.type)
    rank = pc.index_in(modules, value_set=priority)
    return pc.fill_null(rank, len(options.module_priority)).to_numpy().astype(np.int64)


def _has_deals(records: pd.DataFrame, options: GroupingOptions) -> np.ndarray:
    if options.deals_column is None or options.deals_column not in records:
        return np.zeros(len(records), dtype=bool)
    deals = pd.to_numeric(records[options.deals_column], errors="coerce")
    return deals.fillna(0).to_numpy() > 0


def _modified_ns(records: pd.DataFrame, options: GroupingOptions) -> np.ndarray:
    if options.modified_column not in records:
        return np.zeros(len(records), dtype=np.int64)
    modified = records[options.modified_column]
    if not isinstance(modified.dtype, pd.DatetimeTZDtype):
        modified = pd.to_datetime(modified, utc=True, errors="coerce", format="ISO8601")
    nanoseconds = modified.dt.tz_convert("UTC").astype("int64").to_numpy()
    return np.where(modified.isna().to_numpy(), np.iinfo(np.int64).min + 1, nanoseconds)


def _identities(records: pd.DataFrame, options: GroupingOptions) -> pa.Array:
    if options.identity_column is None or options.identity_column not in records:
        return pa.nulls(len(records), pa.large_string())
    return _arrow_text(records[options.identity_column]).cast(pa.large_string())


def _group_identity(
    identity: pa.Array,
    group: np.ndarray,
    order: np.ndarray,
    oversized: np.ndarray,
    group_count: int,
) -> pa.Array:
    """The canonical record's identity, or the next record's in canonical order when it has
    none; an oversized group's records keep their own."""
    known = pc.is_valid(identity).to_numpy(zero_copy_only=False)
    with_identity = order[known[order]]
    groups_with, first = np.unique(group[with_identity], return_index=True)
    source = np.full(group_count, -1, dtype=np.int64)
    source[groups_with] = with_identity[first]
    chosen = np.where(oversized, np.arange(len(group)), source[group])
    taken = identity.take(pa.array(np.where(chosen < 0, 0, chosen)))
    return pc.if_else(pa.array(chosen >= 0), taken, pa.scalar(None, identity.type))


def _collisions(
    ids: pa.Array, canonical: np.ndarray, identity: pa.Array, options: GroupingOptions
) -> tuple[np.ndarray, pd.DataFrame]:
    """Identities that more than one canonical person would upload."""
    encoded = identity.dictionary_encode()
    code = pc.fill_null(encoded.indices, -1).to_numpy().astype(np.int64)
    known = code >= 0
    stride = len(encoded.dictionary) + 1
    person_identity = pd.unique(canonical[known] * stride + code[known])
    person, identity_code = person_identity // stride, person_identity % stride
    people = np.bincount(identity_code, minlength=stride)
    colliding = people[identity_code] > 1
    flagged = known & (people[np.where(known, code, stride - 1)] > 1)

    table = pd.DataFrame({"identity": identity_code[colliding], "person": person[colliding]})
    rows = []
    for value_code, persons in table.groupby("identity")["person"]:
        value = encoded.dictionary[int(value_code)].as_py()
        rows.append(
            {
                "identity_masked": mask_value(value),
                "identity_hash": hash_value(value, options.hash_key),
                "canonical_ids": sorted(ids.take(pa.array(persons.to_numpy())).to_pylist()),
                "people": len(persons),
            }
        )
    columns = ["identity_masked", "identity_hash", "canonical_ids", "people"]
    return flagged, pd.DataFrame(rows, columns=columns)


def _links(
    pairs: _Pairs, keep: np.ndarray, group: np.ndarray, ids: pa.Array, options: GroupingOptions
) -> pd.DataFrame:
    record = pairs.record[keep]
    value_code = pairs.value_code[keep]
    masked, hashed = _display_forms(pairs.values, value_code, options.hash_key)
    links = pd.DataFrame(
        {
            "group_id": group[record],
            "record_id": pd.array(ids.take(pa.array(record)), dtype="str"),
            "field": _field_names(pairs, pairs.field_code[keep]),
            "value": pd.array(pairs.values.take(pa.array(value_code)), dtype="str"),
            "value_masked": masked,
            "value_hash": hashed,
        }
    )
    return links.sort_values(["group_id", "record_id"], ignore_index=True)


def _suppressed(
    pairs: _Pairs, keep: np.ndarray, holders: np.ndarray, options: GroupingOptions
) -> pd.DataFrame:
    value_code, first = np.unique(pairs.value_code[keep], return_index=True)
    masked, hashed = _display_forms(pairs.values, value_code, options.hash_key)
    return pd.DataFrame(
        {
            "field": _field_names(pairs, pairs.field_code[keep][first]),
            "value_masked": masked,
            "value_hash": hashed,
            "records": holders[keep][first],
        }
    )


def _field_names(pairs: _Pairs, field_code: np.ndarray) -> pd.arrays.ArrowStringArray:
    names = np.array(pairs.fields, dtype=object)
    return pd.array(names[field_code] if len(names) else [], dtype="str")


def _display_forms(
    values: pa.Array, value_code: np.ndarray, key: bytes
) -> tuple[pd.arrays.ArrowStringArray, pd.arrays.ArrowStringArray]:
    """Masked and hashed forms of `values[value_code]`, computed once per distinct value."""
    position, distinct = pd.factorize(value_code)
    texts = values.take(pa.array(distinct))
    hashed = np.array([hash_value(text, key) for text in texts.to_pylist()], dtype=object)
    masked = _masked(texts).take(pa.array(position))
    return pd.array(masked, dtype="str"), pd.array(hashed[position], dtype="str")


def _masked(texts: pa.Array) -> pa.Array:
    """`mask_value` for a whole Arrow array at once."""
    texts = texts.cast(pa.string())
    is_email = pc.match_substring(texts, "@")
    domain = pc.replace_substring_regex(texts, r"^.*@", "")
    email = pc.binary_join_element_wise(pc.utf8_slice_codeunits(texts, 0, 1), "***@", domain, "")
    length = pc.utf8_length(texts)
    stars = pc.binary_repeat("*", pc.max_element_wise(pc.subtract(length, 7), 0))
    middle = pc.binary_join_element_wise(
        pc.utf8_slice_codeunits(texts, 0, 3), stars, pc.utf8_slice_codeunits(texts, -4), ""
    )
    short = pc.binary_repeat("*", length)
    phone = pc.if_else(pc.less_equal(length, 7), short, middle)
    return pc.if_else(is_email, email, phone)


def mask_value(value: str) -> str:
    """A display form that does not reveal the value: '+91******3210', 'p***@acme.in'."""
    if "@" in value:
        return f"{value[:1]}***@{value.rpartition('@')[2]}"
    if len(value) <= 7:
        return "*" * len(value)
    return value[:3] + "*" * (len(value) - 7) + value[-4:]


def hash_value(value: str, key: bytes = b"") -> str:
    """A short keyed hash, to match a value across reports without showing it."""
    digest = hashlib.blake2b(value.encode(), key=key[:64], digest_size=HASH_HEX_CHARS // 2)
    return digest.hexdigest()


def _arrow_text(values: pd.Series) -> pa.Array:
    """A column as one Arrow string array (missing values null)."""
    array = pa.array(as_text(values).array)
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
