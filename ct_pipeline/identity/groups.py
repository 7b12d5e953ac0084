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
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ct_pipeline.identity import emails, phones

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
    ids = records[options.id_column].astype("str").to_numpy(dtype=object)
    pairs = _link_values(records, options)

    value_code, values = pd.factorize(pairs["value"])
    holders = np.bincount(value_code, minlength=len(values))
    linking = (holders[value_code] >= 2) & (holders[value_code] <= options.max_records_per_value)
    too_shared = holders[value_code] > options.max_records_per_value

    group = _components(count, pairs["record"][linking], value_code[linking], len(values))
    size = np.bincount(group, minlength=group.max() + 1 if count else 0)[group]
    oversized = size > options.max_group_size
    status = np.where(size == 1, SINGLE, np.where(oversized, OVERSIZED, MERGED))

    order = _canonical_order(records, group, ids, options)
    first_in_group = np.ones(count, dtype=bool)
    first_in_group[1:] = group[order][1:] != group[order][:-1]
    canonical_of_group = np.empty(group.max() + 1 if count else 0, dtype=np.int64)
    canonical_of_group[group[order][first_in_group]] = order[first_in_group]
    canonical = np.where(oversized, np.arange(count), canonical_of_group[group])

    identity = _identities(records, options)
    canonical_identity = _group_identity(identity, group, order, oversized)
    colliding, collisions = _collisions(ids, canonical, canonical_identity, options)

    result = pd.DataFrame(
        {
            "group_id": group,
            "group_size": size,
            "group_status": pd.Categorical(status, categories=[SINGLE, MERGED, OVERSIZED]),
            "is_canonical": canonical == np.arange(count),
            "canonical_id": pd.array(ids[canonical], dtype="str"),
            "canonical_identity": pd.array(canonical_identity, dtype="str"),
            "identity_collision": colliding,
        },
        index=records.index,
    )
    links = _links(pairs, linking & (size[pairs["record"]] > 1), group, ids, options)
    suppressed = _suppressed(pairs, too_shared, holders[value_code], options)
    return DuplicateGroups(result, links, suppressed, collisions)


def _link_values(records: pd.DataFrame, options: GroupingOptions) -> dict[str, np.ndarray]:
    """Every (record, field, normalised value) that may link, one per record and value."""
    record_parts, field_parts, value_parts = [], [], []
    for column in (*options.phone_columns, *options.email_columns):
        if column not in records:
            continue
        if column in options.phone_columns:
            normalised = phones.normalize_phones(
                records[column], options.region, foreign_regions=()
            )
            value, risk = normalised["e164"], normalised["risk"]
            blocked = (risk == phones.PLACEHOLDER).to_numpy()
        else:
            normalised = emails.normalize_emails(records[column])
            value, risk = normalised["email"], normalised["risk"]
            blocked = risk.isin(options.unlinkable_email_risks).to_numpy()
        keep = np.flatnonzero(value.notna().to_numpy() & ~blocked)
        record_parts.append(keep)
        field_parts.append(np.full(len(keep), column, dtype=object))
        value_parts.append(value.to_numpy(dtype=object)[keep])

    if not record_parts:
        empty = np.zeros(0, dtype=np.int64)
        return {"record": empty, "field": empty.astype(object), "value": empty.astype(object)}
    pairs = pd.DataFrame(
        {
            "record": np.concatenate(record_parts),
            "field": np.concatenate(field_parts),
            "value": pd.array(np.concatenate(value_parts), dtype="str"),
        }
    ).drop_duplicates(subset=["record", "value"])
    return {
        "record": pairs["record"].to_numpy(dtype=np.int64),
        "field": pairs["field"].to_numpy(dtype=object),
        "value": pairs["value"].to_numpy(dtype=object),
    }


def _components(
    count: int, record: np.ndarray, value_code: np.ndarray, value_count: int
) -> np.ndarray:
    """Connected components of the record-value graph, numbered from 0, for the records."""
    nodes = count + value_count
    graph = coo_matrix(
        (np.ones(len(record), dtype=np.int8), (record, count + value_code)), shape=(nodes, nodes)
    )
    _, labels = connected_components(graph.tocsr(), directed=False)
    _, group = np.unique(labels[:count], return_inverse=True)
    return group.astype(np.int64)


def _canonical_order(
    records: pd.DataFrame, group: np.ndarray, ids: np.ndarray, options: GroupingOptions
) -> np.ndarray:
    """Record positions sorted by group, then canonical first."""
    keys = {
        "module": _module_rank(records, options),
        "deals": -_has_deals(records, options).astype(np.int8),
        "modified": -_modified_ns(records, options),
    }
    # np.lexsort sorts by the last key first.
    sort_keys = [pd.factorize(ids, sort=True)[0]]
    sort_keys += [keys[name] for name in reversed(options.canonical_order)]
    sort_keys.append(group)
    return np.lexsort(sort_keys)


def _module_rank(records: pd.DataFrame, options: GroupingOptions) -> np.ndarray:
    if options.module_column not in records:
        return np.zeros(len(records), dtype=np.int64)
    ranks = {module: rank for rank, module in enumerate(options.module_priority)}
    modules = records[options.module_column].astype("str")
    return modules.map(ranks).fillna(len(ranks)).to_numpy(dtype=np.int64)


def _has_deals(records: pd.DataFrame, options: GroupingOptions) -> np.ndarray:
    if options.deals_column is None or options.deals_column not in records:
        return np.zeros(len(records), dtype=bool)
    deals = pd.to_numeric(records[options.deals_column], errors="coerce")
    return deals.fillna(0).to_numpy() > 0


def _modified_ns(records: pd.DataFrame, options: GroupingOptions) -> np.ndarray:
    if options.modified_column not in records:
        return np.zeros(len(records), dtype=np.int64)
    modified = pd.to_datetime(records[options.modified_column], utc=True, errors="coerce")
    nanoseconds = modified.astype("int64").to_numpy()
    return np.where(modified.isna().to_numpy(), np.iinfo(np.int64).min + 1, nanoseconds)


def _identities(records: pd.DataFrame, options: GroupingOptions) -> np.ndarray:
    if options.identity_column is None or options.identity_column not in records:
        return np.full(len(records), None, dtype=object)
    identity = records[options.identity_column].astype("str")
    return identity.astype(object).where(identity.notna(), None).to_numpy(dtype=object)


def _group_identity(
    identity: np.ndarray, group: np.ndarray, order: np.ndarray, oversized: np.ndarray
) -> np.ndarray:
    """The canonical record's identity, or the next record's in canonical order when it has
    none; an oversized group's records keep their own."""
    ordered = pd.Series(identity[order], dtype="str")
    first = ordered.groupby(group[order], sort=False).first()
    per_group = first.reindex(np.arange(group.max() + 1 if len(group) else 0))
    chosen = per_group.to_numpy(dtype=object)[group]
    return np.where(oversized, identity, chosen)


def _collisions(
    ids: np.ndarray, canonical: np.ndarray, identity: np.ndarray, options: GroupingOptions
) -> tuple[np.ndarray, pd.DataFrame]:
    """Identities that more than one canonical person would upload."""
    people = pd.DataFrame({"person": canonical, "identity": pd.array(identity, dtype="str")})
    people = people.dropna().drop_duplicates()
    shared = people["identity"].duplicated(keep=False)
    colliding_people = people[shared]
    flagged = pd.Series(identity, dtype="str").isin(colliding_people["identity"].unique())

    by_identity = colliding_people.groupby("identity", sort=True)["person"]
    canonical_ids = by_identity.agg(lambda people_: sorted(ids[people_].tolist()))
    names = canonical_ids.index.to_numpy(dtype=object)
    collisions = pd.DataFrame(
        {
            "identity_masked": pd.array([mask_value(name) for name in names], dtype="str"),
            "identity_hash": pd.array([hash_value(name, options.hash_key) for name in names]),
            "canonical_ids": canonical_ids.to_numpy(dtype=object),
            "people": by_identity.size().to_numpy(),
        }
    )
    return flagged.fillna(False).to_numpy(dtype=bool), collisions


def _links(
    pairs: dict[str, np.ndarray],
    keep: np.ndarray,
    group: np.ndarray,
    ids: np.ndarray,
    options: GroupingOptions,
) -> pd.DataFrame:
    record = pairs["record"][keep]
    value = pairs["value"][keep]
    return pd.DataFrame(
        {
            "group_id": group[record],
            "record_id": pd.array(ids[record], dtype="str"),
            "field": pd.array(pairs["field"][keep], dtype="str"),
            "value": pd.array(value, dtype="str"),
            "value_masked": _masked(value),
            "value_hash": _hashed(value, options.hash_key),
        }
    ).sort_values(["group_id", "record_id"], ignore_index=True)


def _suppressed(
    pairs: dict[str, np.ndarray], keep: np.ndarray, holders: np.ndarray, options: GroupingOptions
) -> pd.DataFrame:
    table = pd.DataFrame(
        {"field": pairs["field"][keep], "value": pairs["value"][keep], "records": holders[keep]}
    ).drop_duplicates(subset=["value"])
    value = table["value"].to_numpy(dtype=object)
    return pd.DataFrame(
        {
            "field": pd.array(table["field"].to_numpy(dtype=object), dtype="str"),
            "value_masked": _masked(value),
            "value_hash": _hashed(value, options.hash_key),
            "records": table["records"].to_numpy(),
        }
    )


def mask_value(value: str) -> str:
    """A display form that does not reveal the value: '+91******3210', 'p***@acme.in'."""
    if "@" in value:
        local, _, domain = value.rpartition("@")
        return f"{local[:1]}***@{domain}"
    if len(value) <= 7:
        return "*" * len(value)
    return value[:3] + "*" * (len(value) - 7) + value[-4:]


def hash_value(value: str, key: bytes = b"") -> str:
    """A short keyed hash, to match a value across reports without showing it."""
    digest = hashlib.blake2b(value.encode(), key=key[:64], digest_size=HASH_HEX_CHARS // 2)
    return digest.hexdigest()


def _masked(values: np.ndarray) -> pd.arrays.ArrowStringArray:
    distinct, codes = np.unique(values.astype(str), return_inverse=True)
    masked = np.array([mask_value(value) for value in distinct], dtype=object)
    return pd.array(masked[codes] if len(values) else masked, dtype="str")


def _hashed(values: np.ndarray, key: bytes) -> pd.arrays.ArrowStringArray:
    distinct, codes = np.unique(values.astype(str), return_inverse=True)
    hashed = np.array([hash_value(value, key) for value in distinct], dtype=object)
    return pd.array(hashed[codes] if len(values) else hashed, dtype="str")
