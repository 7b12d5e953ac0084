"""What an incremental run derives again: the changed records and every record they touch.

The Zoho assets queue the person records a change touches (`warehouse.state`). The identity,
duplicate and profile assets then work on those records and on the records that share a linking
phone or email with them, or shared a duplicate group with them before, read by index, instead
of on whole tables. The scope is closed so that the answer equals a full recompute's: every
holder of a value that links (or linked before the change) is in it, values shared by more
records than the limit are counted over the whole table and do not link, and a record's old
group mates come along. Above `MAX_QUEUED_RECORDS` queued records a full recompute is cheaper.
"""

import hashlib
import importlib.metadata
from collections.abc import Iterable
from dataclasses import dataclass

import dagster as dg
import numpy as np
import pandas as pd

from ct_pipeline.assets.common import is_full_derivation
from ct_pipeline.config import SyncConfig
from ct_pipeline.identity import emails, normalize_emails, normalize_phones, phones
from ct_pipeline.warehouse import WarehouseResource, WarehouseTransaction
from ct_pipeline.warehouse.state import PERSON_CHANGES, full_derivation_pending, queued_changes

# Past this many queued person records, an incremental run recomputes everything instead.
MAX_QUEUED_RECORDS = 50_000
KEY = ["module", "zoho_id"]
# The region the duplicate grouping reads numbers in (GroupingOptions' default).
GROUPING_REGION = "IN"
UNLINKABLE_EMAIL_RISKS = frozenset({emails.PLACEHOLDER, emails.ROLE_ACCOUNT})
MODE_KEY = "derivation.person.mode"
CONFIG_KEY = "derivation.{kind}.configuration"


def must_derive_everything(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    queued: pd.DataFrame,
    tables: Iterable[str],
    config: SyncConfig,
) -> bool:
    """Whether this run recomputes the person tables whole: before the first derivation, when
    a Zoho table was replaced whole, when the sync configuration (or ct_pipeline) changed since
    the last full derivation, when more changed than `MAX_QUEUED_RECORDS`, or when the run
    asks for it (FULL_DERIVATION_TAG). Decided once per run, by the first derivation asset."""
    if is_full_derivation(context) or full_derivation_pending(warehouse, PERSON_CHANGES):
        return True
    if configuration_changed(warehouse, PERSON_CHANGES, config):
        return True
    if len(queued) > MAX_QUEUED_RECORDS:
        return True
    return not all(warehouse.table_exists(table) for table in tables)


def record_mode(
    tx: WarehouseTransaction, run_id: str, everything: bool, config: SyncConfig
) -> None:
    """Remember how this run derives, for the assets after the first; a full derivation also
    records the configuration it derives under."""
    tx.set_state(MODE_KEY, f"{run_id}:{'full' if everything else 'incremental'}")
    if everything:
        record_configuration(tx, PERSON_CHANGES, config)


def configuration_changed(warehouse: WarehouseResource, kind: str, config: SyncConfig) -> bool:
    """Whether the derivations of `kind` (person or deal) last ran whole under another sync
    configuration or another ct_pipeline version: what they hold may no longer follow from it."""
    return warehouse.get_state(CONFIG_KEY.format(kind=kind)) != _fingerprint(config)


def record_configuration(tx: WarehouseTransaction, kind: str, config: SyncConfig) -> None:
    """Note the configuration a full derivation of `kind` runs under."""
    tx.set_state(CONFIG_KEY.format(kind=kind), _fingerprint(config))


def _fingerprint(config: SyncConfig) -> str:
    text = f"{importlib.metadata.version('ct_pipeline')}\n{config.model_dump_json()}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def derives_everything(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> bool:
    """Whether this run derives whole tables (as the first derivation asset decided); an asset
    materialised on its own, outside such a run, always does."""
    return warehouse.get_state(MODE_KEY) != f"{context.run.run_id}:incremental"


def queued_people(warehouse: WarehouseResource) -> pd.DataFrame:
    """The queued person records (`module`, `zoho_id`)."""
    return queued_changes(warehouse, PERSON_CHANGES)


def keys_of(frame: pd.DataFrame) -> set[tuple[str, str]]:
    """The (module, zoho_id) keys of a frame."""
    if frame.empty:
        return set()
    return set(zip(frame["module"].astype(str), frame["zoho_id"].astype(str), strict=True))


def rows_for_keys(
    warehouse: WarehouseResource,
    table: str,
    keys: Iterable[tuple[str, str]],
    columns: list[str] | None = None,
) -> pd.DataFrame:
    """The rows of a (module, zoho_id)-keyed table for `keys`, read by zoho_id."""
    wanted = set(keys)
    rows = warehouse.read_rows(table, "zoho_id", [zoho_id for _, zoho_id in wanted], columns)
    if rows.empty:
        return rows
    return rows[in_keys(rows, wanted)]


def in_keys(frame: pd.DataFrame, keys: set[tuple[str, str]]) -> np.ndarray:
    """Which rows of a (module, zoho_id) frame have one of `keys`, as a boolean array (a list
    would select columns instead of rows when empty)."""
    pairs = zip(frame["module"], frame["zoho_id"], strict=True)
    return np.fromiter((pair in keys for pair in pairs), dtype=bool, count=len(frame))


def delete_keys(tx: WarehouseTransaction, table: str, keys: Iterable[tuple[str, str]]) -> None:
    """Delete the rows of a (module, zoho_id)-keyed table for `keys`."""
    by_module: dict[str, list[str]] = {}
    for module, zoho_id in keys:
        by_module.setdefault(module, []).append(zoho_id)
    for module, ids in by_module.items():
        tx.execute_in(
            f"DELETE FROM {table} WHERE module = :module AND zoho_id IN :keys",
            ids,
            {"module": module},
        )


@dataclass(frozen=True)
class LinkColumns:
    """The `contact_identities` columns whose values link records (as `group_members`
    configures the grouping): normalised phones and emails."""

    phones: tuple[str, ...]
    emails: tuple[str, ...]

    @property
    def all(self) -> tuple[str, ...]:
        """Every link column, phones first."""
        return (*self.phones, *self.emails)

    def kind(self, column: str) -> str:
        """`phone` or `email`."""
        return "phone" if column in self.phones else "email"


def link_values(rows: pd.DataFrame, links: LinkColumns) -> pd.DataFrame:
    """The values by which rows of `contact_identities` may link (`module`, `zoho_id`, `kind`,
    `value`), computed as the duplicate grouping computes them: normalised again, placeholders
    and unlinkable emails left out, one row per record and value."""
    parts = []
    for column in links.all:
        if column not in rows or rows.empty:
            continue
        if column in links.phones:
            normalised = normalize_phones(rows[column], GROUPING_REGION, foreign_regions=())
            value = normalised["e164"]
            blocked = normalised["risk"] == phones.PLACEHOLDER
            kind = "phone"
        else:
            normalised = normalize_emails(rows[column])
            value = normalised["email"]
            blocked = normalised["risk"].isin(UNLINKABLE_EMAIL_RISKS)
            kind = "email"
        keep = value.notna().to_numpy() & ~blocked.fillna(False).to_numpy(dtype=bool)
        parts.append(
            pd.DataFrame(
                {
                    "module": rows["module"].astype(str).to_numpy()[keep],
                    "zoho_id": rows["zoho_id"].astype(str).to_numpy()[keep],
                    "kind": kind,
                    "value": value.astype(str).to_numpy()[keep],
                }
            )
        )
    columns = ["module", "zoho_id", "kind", "value"]
    if not parts:
        return pd.DataFrame({column: pd.Series(dtype="str") for column in columns})
    return pd.concat(parts, ignore_index=True).drop_duplicates(columns, ignore_index=True)


def holders(
    warehouse: WarehouseResource, table: str, values: pd.DataFrame, links: LinkColumns
) -> pd.DataFrame:
    """Rows of `contact_identities` holding any of `values` (`kind`, `value`) in a link column."""
    found = []
    for kind, columns in (("phone", links.phones), ("email", links.emails)):
        wanted = values.loc[values["kind"] == kind, "value"].tolist()
        if not wanted:
            continue
        for column in columns:
            found.append(warehouse.read_rows(table, column, wanted))
    found = [frame for frame in found if len(frame)]
    if not found:
        return pd.DataFrame()
    return pd.concat(found, ignore_index=True).drop_duplicates(KEY, ignore_index=True)


def duplicate_scope(
    warehouse: WarehouseResource,
    identities_table: str,
    members_table: str,
    seeds: set[tuple[str, str]],
    previous: pd.DataFrame,
    max_records_per_value: int,
    links: LinkColumns,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The `contact_identities` rows to group again, and the values too shared to link.

    Starting from the changed records (`seeds`, with their rows before the change in
    `previous`), it adds every holder of a value that links now or linked before the change,
    and the old group mates of every record added, until nothing new comes in. Returns the
    current rows of the records in scope and the (`kind`, `value`) pairs held by more than
    `max_records_per_value` records over the whole table.
    """
    in_scope: set[tuple[str, str]] = set()
    checked: set[tuple[str, str]] = set()
    scope_rows: list[pd.DataFrame] = []
    suppressed: list[pd.DataFrame] = []
    before = link_values(previous, links)
    frontier = set(seeds)
    first = True
    while frontier:
        in_scope |= frontier
        current = rows_for_keys(warehouse, identities_table, frontier)
        scope_rows.append(current)
        mates = _old_group_mates(warehouse, members_table, frontier)

        values = pd.concat(
            [link_values(current, links), before if first else None, _stored(current, links)]
        )
        values = values.drop_duplicates(["kind", "value"])
        values = values[np.array([pair not in checked for pair in _pairs(values)], dtype=bool)]
        checked |= set(_pairs(values))
        first = False

        held = holders(warehouse, identities_table, values, links)
        held_values = link_values(held if len(held) else pd.DataFrame(), links)
        held_values = held_values.merge(values[["kind", "value"]], on=["kind", "value"])
        now = held_values.groupby(["kind", "value"]).size()
        seeds_now = held_values[in_keys(held_values, seeds)]
        old = (
            now.sub(seeds_now.groupby(["kind", "value"]).size(), fill_value=0)
            .add(before.groupby(["kind", "value"]).size(), fill_value=0)
            .reindex(now.index, fill_value=0)
        )
        spreading = now[(now <= max_records_per_value) | (old <= max_records_per_value)].index
        too_shared = now[now > max_records_per_value].reset_index()[["kind", "value"]]
        suppressed.append(too_shared)

        linked = held_values.set_index(["kind", "value"]).loc[
            held_values.set_index(["kind", "value"]).index.isin(spreading)
        ]
        frontier = (keys_of(linked.reset_index()) | keys_of(mates)) - in_scope

    rows = pd.concat(scope_rows, ignore_index=True).drop_duplicates(KEY, ignore_index=True)
    return rows, pd.concat(suppressed, ignore_index=True).drop_duplicates(ignore_index=True)


def without_suppressed(
    rows: pd.DataFrame, suppressed: pd.DataFrame, links: LinkColumns
) -> pd.DataFrame:
    """`rows` with every link value in `suppressed` blanked, so a grouping of these rows alone
    does not link by a value the whole table holds too often."""
    if suppressed.empty or rows.empty:
        return rows
    rows = rows.copy()
    for column in links.all:
        kind = links.kind(column)
        values = set(suppressed.loc[suppressed["kind"] == kind, "value"])
        if column in links.phones:
            normalised = normalize_phones(rows[column], GROUPING_REGION, foreign_regions=())["e164"]
        else:
            normalised = normalize_emails(rows[column])["email"]
        blank = normalised.isin(values).to_numpy() | rows[column].isin(values).to_numpy()
        rows[column] = rows[column].where(~blank, None)
    return rows


def _old_group_mates(
    warehouse: WarehouseResource, members_table: str, keys: set[tuple[str, str]]
) -> pd.DataFrame:
    own = rows_for_keys(warehouse, members_table, keys, ["module", "zoho_id", "group_id"])
    if own.empty:
        return own
    return warehouse.read_rows(
        members_table, "group_id", own["group_id"].tolist(), ["module", "zoho_id"]
    )


def _stored(rows: pd.DataFrame, links: LinkColumns) -> pd.DataFrame:
    """The link columns' values as stored, to find holders whose stored form differs."""
    parts = []
    for column in links.all:
        if column in rows:
            values = rows[column].dropna().astype(str)
            parts.append(pd.DataFrame({"kind": links.kind(column), "value": values.to_numpy()}))
    return pd.concat(parts, ignore_index=True) if parts else None


def _pairs(values: pd.DataFrame) -> list[tuple[str, str]]:
    return list(zip(values["kind"], values["value"], strict=True))
