"""From profile attributes and deal stages to CleverTap: events, upload batches, and the uploads.

Profiles are pushed when their payload hash differs from the one CleverTap last accepted; a
profile batch is marked in flight before its request leaves, so a run that dies before recording
the answer leaves its profiles marked as having an unknown outcome. Deal stage changes become
events in the event outbox, in the transaction that advances the stage snapshot; the event
upload marks a batch `sending` before its request leaves and `sent` only once CleverTap accepted
it, so a retry never sends an accepted event twice.
"""

import hashlib
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import orjson
import pandas as pd

from ct_pipeline.assets import incremental, schemas
from ct_pipeline.assets.common import (
    CLEVERTAP_POOL,
    OWNERS,
    WAREHOUSE_KIND,
    is_dry_run,
    is_full_derivation,
    mask_identity,
    warehouse_table_metadata,
)
from ct_pipeline.assets.identity import MEMBERS_TABLE, PREVIOUS_TABLE, PUSH, duplicate_profiles
from ct_pipeline.assets.reconciliation import clevertap_reconciliation, upload_identities
from ct_pipeline.assets.segments import CHANGES_TABLE as PROFILE_CHANGES_TABLE
from ct_pipeline.assets.segments import TABLE as PROFILE_TABLE
from ct_pipeline.assets.segments import profile_attributes
from ct_pipeline.assets.zoho import TABLES, zoho_deals
from ct_pipeline.clevertap import CleverTapResource, UploadItem
from ct_pipeline.clevertap.payloads import build_event_record, build_profile_records
from ct_pipeline.clevertap.results import BatchResult, TriggerResult, UploadReport
from ct_pipeline.config import SyncConfig, SyncConfigResource
from ct_pipeline.crashpoints import crash_point
from ct_pipeline.warehouse import WarehouseResource, WarehouseTransaction
from ct_pipeline.warehouse.state import (
    DEAL_CHANGES,
    HELD,
    PENDING,
    PERSON_CHANGES,
    PUSHED_PROFILES,
    REJECTED,
    RELEASED,
    SENDING,
    SENT,
    STAGE_SNAPSHOT,
    UNKNOWN_OUTCOME,
    clear_changes,
    clear_profiles_in_flight,
    clear_rejections,
    count_attempt,
    enqueue_outbox,
    fold_accepted_profiles,
    forget_profile_holds,
    full_derivation_pending,
    hold_profiles,
    mark_profiles_in_flight,
    profile_holds,
    profiles_in_flight,
    pushed_hashes,
    queued_changes,
    read_outbox,
    read_stage_snapshot,
    record_accepted_profiles,
    record_rejections,
    rejected_keys,
    set_outbox_status,
)

GROUP = "clevertap"
EVENTS_TABLE = "deal_stage_events"
PROFILE_BATCHES = "clevertap_profile_batches"
EVENT_BATCHES = "clevertap_event_batches"
PROFILE_OUTCOMES = "clevertap_profile_outcomes"
EVENT_OUTCOMES = "clevertap_event_outcomes"
EVENT_KIND = "event"
CAMPAIGN_KIND = "campaign"
# Profile columns that are bookkeeping, not CleverTap properties.
NOT_PROFILE_DATA = {"identity", "identity_kind", "modified_time"}
# What a stage event is made of (`outbox_rows`), and what the stage snapshot keeps.
EVENT_DEAL_COLUMNS = [
    "id",
    "Stage",
    "Modified_Time",
    "Contact_Name_id",
    "Amount",
    "Product_Category",
    "Pipeline",
    "Owner_name",
]
PREVIEW_ROWS = 10
# Outcomes kept in clevertap_rejections.
REFUSED = frozenset({"rejected", "rejected_locally"})
NO_OUTCOMES = UploadReport((), 0, 0).as_frame()
# Profile records built, or parsed back from JSON for the upload, at a time.
ITEMS_PER_READ = 10_000


@dg.asset(
    name=EVENTS_TABLE,
    group_name=GROUP,
    deps=[zoho_deals, duplicate_profiles],
    kinds={"pandas", WAREHOUSE_KIND},
    owners=OWNERS,
    metadata={"dagster/column_schema": schemas.DEAL_STAGE_EVENTS},
    description=(
        "Deal stage transitions since the stored stage snapshot, each a `Deal Stage Changed` "
        "event carrying stage_name and previous_stage. They are written to the event outbox in "
        "the transaction that advances the snapshot. The first sync only records the snapshot: "
        "nobody is notified about a stage reached months ago."
    ),
)
def deal_stage_events(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    sync_config: SyncConfigResource,
) -> dg.MaterializeResult:
    config = sync_config.load()
    first_sync = not warehouse.table_exists(STAGE_SNAPSHOT)
    changed_deals = queued_changes(warehouse, DEAL_CHANGES)
    everything = (
        first_sync
        or is_full_derivation(context)
        or full_derivation_pending(warehouse, DEAL_CHANGES)
        or incremental.configuration_changed(warehouse, DEAL_CHANGES, config)
        or len(changed_deals) > incremental.MAX_QUEUED_RECORDS
    )
    if everything:
        stored = warehouse.column_names(TABLES["Deals"])
        deals = warehouse.read_table(
            TABLES["Deals"], columns=[c for c in EVENT_DEAL_COLUMNS if c in stored]
        )
        snapshot = read_stage_snapshot(warehouse)
    else:
        # Only the deals the Zoho asset queued: a deal not re-read cannot have moved.
        deals = warehouse.read_rows(TABLES["Deals"], "id", changed_deals["zoho_id"])
        snapshot = warehouse.read_rows(STAGE_SNAPSHOT, "deal_id", changed_deals["zoho_id"])
    contact_ids = deals["Contact_Name_id"].dropna() if "Contact_Name_id" in deals else []
    identities = push_identity_by_contact(warehouse, None if everything else contact_ids)

    events = pd.DataFrame() if first_sync else stage_transitions(deals, snapshot, config)
    outbox = outbox_rows(events, identities, config) if len(events) else pd.DataFrame()
    current = _snapshot_rows(deals)
    with warehouse.transaction() as tx:
        queued = enqueue_outbox(tx, outbox)
        tx.upsert(STAGE_SNAPSHOT, current, key=["deal_id"])
        tx.replace_table(EVENTS_TABLE, _events_table(outbox), key=["event_id"])
        clear_changes(tx, DEAL_CHANGES, None if everything else changed_deals)
        if everything:
            incremental.record_configuration(tx, DEAL_CHANGES, config)

    crash_point("after_stage_snapshot")
    held = int((outbox["status"] == HELD).sum()) if len(outbox) else 0
    found = "first sync: snapshot recorded, no events" if first_sync else f"{len(events)} moves"
    context.log.info(f"{found}; {queued} outbox rows queued, {held} held")
    return dg.MaterializeResult(
        metadata={
            **warehouse_table_metadata(warehouse, EVENTS_TABLE),
            "first sync": first_sync,
            "transitions": len(events),
            "outbox rows queued": queued,
            "held (no identity)": held,
            "deals in snapshot": len(current),
        }
    )


def stage_transitions(
    deals: pd.DataFrame, snapshot: pd.DataFrame, config: SyncConfig
) -> pd.DataFrame:
    """Deals whose stage differs from the snapshot (new deals too), with `previous_stage`."""
    if deals.empty:
        return pd.DataFrame()
    previous = snapshot.set_index("deal_id")["stage"]
    current = deals.assign(previous_stage=deals["id"].map(previous))
    moved = current[
        current["previous_stage"].isna() | (current["Stage"] != current["previous_stage"])
    ]
    moved = moved[moved["Stage"].notna()]
    wanted = config.deal_events.stages
    if wanted != "all":
        moved = moved[moved["Stage"].isin(wanted)]
    return moved.reset_index(drop=True)


def outbox_rows(events: pd.DataFrame, identities: pd.Series, config: SyncConfig) -> pd.DataFrame:
    """Outbox rows for stage events and the campaigns their stages trigger."""
    campaigns = {c.stage: c.campaign_id for c in config.deal_events.campaigns}
    rows: list[dict[str, Any]] = []
    for deal in events.itertuples(index=False):
        contact_id = _text(getattr(deal, "Contact_Name_id", None))
        identity = identities.get(contact_id) if contact_id else None
        event_time = pd.Timestamp(deal.Modified_Time).tz_convert(UTC)
        previous = _text(deal.previous_stage)
        properties = {
            "stage_name": deal.Stage,
            "previous_stage": previous or "",
            "deal_value_inr": _number(getattr(deal, "Amount", None)),
            "product_category": _text(getattr(deal, "Product_Category", None)),
            "pipeline": _text(getattr(deal, "Pipeline", None)),
            "deal_id": deal.id,
            "account_manager": _text(getattr(deal, "Owner_name", None)),
        }
        event_id = _event_id(deal.id, previous, deal.Stage, event_time)
        base = {
            "deal_id": deal.id,
            "contact_id": contact_id,
            "identity": identity,
            "event_time": event_time,
            "status": PENDING if identity else HELD,
            "reason": None if identity else "no_pushed_identity_for_contact",
        }
        rows.append(
            base
            | {
                "event_id": event_id,
                "kind": EVENT_KIND,
                "name": config.deal_events.event_name,
                "payload": _json({k: v for k, v in properties.items() if v is not None}),
            }
        )
        campaign_id = campaigns.get(deal.Stage)
        if campaign_id:
            rows.append(
                base
                | {
                    "event_id": _digest(f"campaign|{campaign_id}|{event_id}"),
                    "kind": CAMPAIGN_KIND,
                    "name": campaign_id,
                    "payload": _json(
                        {
                            "stage_name": deal.Stage,
                            "deal_id": deal.id,
                            "previous_stage": previous or "",
                        }
                    ),
                }
            )
    frame = pd.DataFrame(rows)
    frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True)
    return frame


@dg.asset(
    name=PROFILE_BATCHES,
    group_name=GROUP,
    deps=[profile_attributes, clevertap_reconciliation],
    kinds={"pandas", "clevertap", WAREHOUSE_KIND},
    owners=OWNERS,
    metadata={"dagster/column_schema": schemas.PROFILE_BATCHES},
    description=(
        "The CleverTap profile records that changed since CleverTap last accepted them "
        "(compared by payload hash per identity), numbered into upload batches of at most the "
        "configured batch size, each under the identity reconciliation chose. A second run "
        "with no CRM change holds nothing. Profiles a previous upload sent without recording "
        "CleverTap's answer (it died mid-upload) have an unknown outcome: they are resent or "
        "held for review, as clevertap.unknown_outcome_policy says, and counted here."
    ),
)
def clevertap_profile_batches(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    sync_config: SyncConfigResource,
) -> dg.MaterializeResult:
    config = sync_config.load()
    dry_run = is_dry_run(context)
    upload_as, held = upload_identities(warehouse)
    unknown = profiles_in_flight(warehouse)
    policy = config.clevertap.unknown_outcome_policy
    holds = profile_holds(warehouse)
    on_hold = set(holds.loc[holds["status"] == HELD, "identity"])
    released = set(holds.loc[holds["status"] == RELEASED, "identity"])
    if policy == "hold":
        on_hold |= set(unknown["identity"])
    # Sent again whatever their hash: CleverTap may hold either payload, or none.
    resend = (set(unknown["identity"]) | released) - on_hold
    # With reconciliation decisions, who else uploads under an identity is a whole-table fact.
    if incremental.derives_everything(context, warehouse) or len(upload_as) or held:
        profiles = warehouse.read_table(PROFILE_TABLE)
        pushed = pushed_hashes(warehouse)
    else:
        # The profiles rewritten by this run, and those an earlier push did not deliver.
        wanted = set(warehouse.read_table(PROFILE_CHANGES_TABLE, columns=["identity"])["identity"])
        wanted |= undelivered_batch_identities(warehouse) | resend
        profiles = warehouse.read_rows(PROFILE_TABLE, "identity", sorted(wanted))
        pushed = pushed_hashes(warehouse, sorted(wanted))
    pushed = pushed[~pushed.index.isin(resend)]
    # Two people reconciled onto one CleverTap profile would be merged there: hold both.
    uploaded = profiles["identity"]
    if len(upload_as):
        uploaded = uploaded.map(upload_as).fillna(uploaded)
    held |= set(profiles.loc[uploaded.duplicated(keep=False), "identity"])
    profiles = profiles[~profiles["identity"].isin(held | on_hold)].reset_index(drop=True)
    batches = changed_profile_records(profiles, pushed, config, upload_as)
    with warehouse.transaction() as tx:
        tx.replace_table(PROFILE_BATCHES, batches, key=["identity"])
        # The person derivation is complete: its queue and its before-images are spent.
        clear_changes(tx, PERSON_CHANGES, None)
        if tx.table_exists(PREVIOUS_TABLE):
            tx.execute(f"DELETE FROM {PREVIOUS_TABLE}")
        # A dry run decides nothing for the real run after it.
        if not dry_run:
            if policy == "hold":
                hold_profiles(tx, unknown, UNKNOWN_OUTCOME)
            clear_profiles_in_flight(tx, unknown["identity"])
            forget_profile_holds(tx, released)

    if len(unknown):
        context.log.warning(
            f"{len(unknown)} profiles had an unknown outcome (sent by an upload that ended "
            f"before CleverTap's answer was recorded); policy {policy}: "
            f"{'sending them again' if policy == 'resend' else 'held for review'}"
        )
    context.log.info(f"{len(batches)} of {len(profiles)} profiles changed since the last push")
    return dg.MaterializeResult(
        metadata={
            **warehouse_table_metadata(warehouse, PROFILE_BATCHES),
            "profiles": len(profiles),
            "changed": len(batches),
            "unchanged": len(profiles) - len(batches),
            "held by reconciliation": len(held),
            "unknown outcomes found": len(unknown),
            "unknown outcome policy": policy,
            "held for review (unknown outcome)": len(on_hold),
            "released for resending": len(released),
            "batches": int(batches["batch"].nunique()) if len(batches) else 0,
            "batch size": config.clevertap.batch_size,
        }
    )


def undelivered_batch_identities(warehouse: WarehouseResource) -> set[str]:
    """Identities in the last profile batches whose hash CleverTap has not accepted (the
    journal is folded by profile_attributes, before this runs)."""
    if not warehouse.table_exists(PROFILE_BATCHES):
        return set()
    if not warehouse.table_exists(PUSHED_PROFILES):
        return set(warehouse.read_table(PROFILE_BATCHES, columns=["identity"])["identity"])
    undelivered = warehouse.read_sql(
        f"SELECT b.identity FROM {PROFILE_BATCHES} b LEFT JOIN {PUSHED_PROFILES} p "
        "ON p.identity = b.identity "
        "WHERE p.payload_hash IS NULL OR p.payload_hash <> b.payload_hash"
    )
    return set(undelivered["identity"])


def changed_profile_records(
    profiles: pd.DataFrame,
    pushed: pd.Series,
    config: SyncConfig,
    upload_as: pd.Series | None = None,
) -> pd.DataFrame:
    """Profile records whose hash differs from the last accepted one, numbered into batches.

    `upload_as` maps an identity to the one CleverTap already holds the person under.
    """
    columns = ["batch", "identity", "contact_id", "payload_hash", "record"]
    if profiles.empty:
        return pd.DataFrame({c: pd.Series(dtype="str") for c in columns}).astype({"batch": "int64"})
    properties = [c for c in profiles.columns if c not in NOT_PROFILE_DATA]
    uploaded = profiles["identity"]
    if upload_as is not None and len(upload_as):
        uploaded = uploaded.map(upload_as).fillna(uploaded)
    identities = uploaded.astype("str").tolist()
    data = profiles[properties]
    hashes: list[str] = []
    records: list[str] = []
    # In slices: only one slice's records are ever held as dictionaries.
    for start in range(0, len(profiles), ITEMS_PER_READ):
        rows = slice(start, start + ITEMS_PER_READ)
        built = build_profile_records(
            identities[rows], data.iloc[rows], profiles["modified_time"].iloc[rows]
        )
        hashes.extend(_digest(_json(record["profileData"])) for record in built)
        records.extend(_json(record) for record in built)
    frame = pd.DataFrame(
        {
            "identity": profiles["identity"].astype("str"),
            "contact_id": profiles["crm_contact_id"].astype("str"),
            "payload_hash": hashes,
            "record": records,
        }
    )
    changed = frame[frame["payload_hash"] != frame["identity"].map(pushed)].reset_index(drop=True)
    changed.insert(0, "batch", (changed.index // config.clevertap.batch_size).astype("int64"))
    return changed


@dg.asset(
    name="clevertap_profile_sync",
    group_name=GROUP,
    deps=[clevertap_profile_batches],
    kinds={"clevertap", "pandas", WAREHOUSE_KIND},
    pool=CLEVERTAP_POOL,
    owners=OWNERS,
    metadata={"dagster/column_schema": schemas.PROFILE_OUTCOMES},
    description=(
        "Uploads the changed profiles to CleverTap (/1/upload). Each batch is marked in flight "
        "before its request leaves; each record's outcome is written back as its batch "
        "finishes, clearing the mark: accepted advances the stored payload hash "
        "(journalled per batch, folded into clevertap_pushed_profiles when the upload ends); "
        "rejected is kept in clevertap_rejections with CleverTap's code and error and the Zoho "
        "id; failed stays changed and is sent by the next run. A dry run sends nothing."
    ),
)
def clevertap_profile_sync(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    clevertap: CleverTapResource,
) -> dg.MaterializeResult:
    batches = warehouse.read_table(PROFILE_BATCHES)
    dry_run = is_dry_run(context) or clevertap.dry_run
    client = clevertap.model_copy(update={"dry_run": dry_run})
    identities = batches["identity"].tolist()
    contact_of = dict(zip(identities, batches["contact_id"].tolist(), strict=True))
    hash_of = dict(zip(identities, batches["payload_hash"].tolist(), strict=True))
    rejected_before = rejected_keys(warehouse, "profile")
    run_id = context.run.run_id

    # One bookkeeping write at a time: the first mark creates the table, and on SQLite a
    # writer that finds another mid-transaction sleeps in its busy handler instead of waiting.
    writing = threading.Lock()

    def profiles(keys: list[str]) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "identity": keys,
                "payload_hash": [hash_of[key] for key in keys],
                "contact_id": [contact_of[key] for key in keys],
            }
        )

    def mark_in_flight(number: int, batch: Sequence[UploadItem]) -> None:
        marked = profiles([item.key for item in batch]).assign(batch=number, run_id=run_id)
        with writing, warehouse.transaction() as tx:
            mark_profiles_in_flight(tx, marked)

    def record_batch(result: BatchResult) -> None:
        if dry_run:
            return
        accepted = [o.key for o in result.outcomes if o.outcome == "accepted"]
        refused = [o for o in result.outcomes if o.outcome in REFUSED]
        # A failure CleverTap may have processed stays in flight: an unknown outcome.
        settled = [
            o.key for o in result.outcomes if not (o.outcome == "failed" and o.maybe_delivered)
        ]
        with writing, warehouse.transaction() as tx:
            if result.batch is not None:
                clear_profiles_in_flight(tx, settled)
            record_accepted_profiles(tx, profiles(accepted))
            clear_rejections(tx, "profile", [key for key in accepted if key in rejected_before])
            if refused:
                frame = _with_zoho_ids(UploadReport(tuple(refused), 0, 0).as_frame(), contact_of)
                record_rejections(tx, _rejection_rows(frame, "profile", run_id))
            crash_point("profile_bookkeeping")

    try:
        report = client.upload(
            _upload_items(batches["identity"], batches["record"]),
            on_batch_done=record_batch,
            on_batch_sending=None if dry_run else mark_in_flight,
        )
    finally:
        fold_accepted_profiles(warehouse)
    every = _with_zoho_ids(report.as_frame(), contact_of)
    warehouse.replace_table(PROFILE_OUTCOMES, every.drop(columns=["maybe_delivered"]))
    if report.fatal_error:
        raise dg.Failure(description=f"CleverTap refused the upload: {report.fatal_error}")
    if len(every):
        _fail_on_undelivered(every, "profiles", "they stay changed and the next run sends them")
    return dg.MaterializeResult(
        metadata=_sync_metadata(report.counts, report.requests, every, dry_run)
    )


def _upload_items(keys: pd.Series, records: pd.Series) -> Iterator[UploadItem]:
    """Upload items from a batches table, its JSON records parsed as the upload reads them."""
    for start in range(0, len(keys), ITEMS_PER_READ):
        chunk = zip(
            keys.iloc[start : start + ITEMS_PER_READ].tolist(),
            records.iloc[start : start + ITEMS_PER_READ].tolist(),
            strict=True,
        )
        for key, record in chunk:
            yield UploadItem(key=key, record=orjson.loads(record))


@dg.asset(
    name=EVENT_BATCHES,
    group_name=GROUP,
    deps=[deal_stage_events],
    kinds={"pandas", "clevertap", WAREHOUSE_KIND},
    owners=OWNERS,
    metadata={"dagster/column_schema": schemas.EVENT_BATCHES},
    description=(
        "The outbox events and campaign triggers waiting to be sent, in batches. Events a "
        "previous run sent without recording CleverTap's answer (it died mid-upload) have an "
        "unknown outcome: they are resent or held for review, as clevertap.unknown_outcome_policy "
        "says, and counted here."
    ),
)
def clevertap_event_batches(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    sync_config: SyncConfigResource,
) -> dg.MaterializeResult:
    config = sync_config.load()
    policy = config.clevertap.unknown_outcome_policy
    unknown = read_outbox(warehouse, [SENDING])
    # A dry run decides nothing for the real run after it: it shows what the policy would do.
    if len(unknown) and not is_dry_run(context):
        status = PENDING if policy == "resend" else HELD
        with warehouse.transaction() as tx:
            set_outbox_status(
                tx,
                pd.DataFrame(
                    {"event_id": unknown["event_id"], "status": status, "reason": UNKNOWN_OUTCOME}
                ),
            )
    if len(unknown):
        context.log.warning(
            f"{len(unknown)} outbox rows had an unknown outcome; policy {policy}: "
            f"{'sending them again' if policy == 'resend' else 'held for review'}"
        )
    pending = read_outbox(warehouse, [PENDING, SENDING] if policy == "resend" else [PENDING])
    # Numbered within each kind: campaign rows interleaved with events would otherwise split
    # the events into more /1/upload requests than their count needs.
    position = pending.groupby("kind", sort=False).cumcount() if len(pending) else []
    batches = pending.assign(
        batch=pd.Series(position, dtype="int64") // config.clevertap.batch_size
    )
    warehouse.replace_table(
        EVENT_BATCHES,
        batches[
            ["batch", "event_id", "kind", "name", "identity", "deal_id", "payload", "event_time"]
        ],
        key=["event_id"],
    )
    return dg.MaterializeResult(
        metadata={
            **warehouse_table_metadata(warehouse, EVENT_BATCHES),
            "pending events": int((pending["kind"] == EVENT_KIND).sum()),
            "pending campaign triggers": int((pending["kind"] == CAMPAIGN_KIND).sum()),
            "unknown outcomes found": len(unknown),
            "unknown outcome policy": policy,
        }
    )


@dg.asset(
    name="clevertap_event_sync",
    group_name=GROUP,
    deps=[clevertap_event_batches],
    kinds={"clevertap", "pandas", WAREHOUSE_KIND},
    pool=CLEVERTAP_POOL,
    owners=OWNERS,
    metadata={"dagster/column_schema": schemas.EVENT_OUTCOMES},
    description=(
        "Sends the pending outbox: events through /1/upload one batch at a time, then campaign "
        "triggers through /1/send/externaltrigger.json. Rows are marked sending before their "
        "request leaves and sent only after CleverTap accepted them; rejected rows keep "
        "CleverTap's code and error. Uncertain failures are not retried blindly."
    ),
)
def clevertap_event_sync(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    clevertap: CleverTapResource,
) -> dg.MaterializeResult:
    batches = warehouse.read_table(EVENT_BATCHES)
    dry_run = is_dry_run(context) or clevertap.dry_run
    client = clevertap.model_copy(update={"dry_run": dry_run})
    events = batches[batches["kind"] == EVENT_KIND] if len(batches) else batches
    campaigns = batches[batches["kind"] == CAMPAIGN_KIND] if len(batches) else batches
    counts = {"accepted": 0, "rejected": 0, "rejected_locally": 0, "failed": 0, "dry_run": 0}
    requests = 0
    outcomes: list[pd.DataFrame] = []
    deal_of = (
        dict(zip(batches["event_id"].tolist(), batches["deal_id"].tolist(), strict=True))
        if len(batches)
        else {}
    )

    for _, batch in events.groupby("batch") if len(events) else []:
        items = [
            UploadItem(key=row.event_id, record=_event_record(row, context))
            for row in batch.itertuples(index=False)
        ]
        if not dry_run:
            with warehouse.transaction() as tx:
                count_attempt(tx, batch["event_id"].tolist())
        report = client.upload(items, retry_uncertain=False)
        requests += report.requests
        frame = _with_zoho_ids(report.as_frame(), deal_of)
        outcomes.append(frame)
        for name, count in report.counts.items():
            counts[name] += count
        if not dry_run:
            with warehouse.transaction() as tx:
                _record_event_outcomes(tx, frame, context.run.run_id)
                crash_point("event_bookkeeping")
        if report.fatal_error:
            raise dg.Failure(description=f"CleverTap refused the upload: {report.fatal_error}")

    # Triggers go out a batch at a time, several in flight: a batch is marked sending before
    # its requests leave and its answers are stored together, so a run killed mid-batch leaves
    # at most one batch with an unknown outcome, as for events.
    for start in range(0, len(campaigns), client.batch_size):
        chunk = campaigns.iloc[start : start + client.batch_size]
        if not dry_run:
            with warehouse.transaction() as tx:
                count_attempt(tx, chunk["event_id"].tolist())
        results = client.trigger_campaigns(
            [
                (row.name, [row.identity], orjson.loads(row.payload))
                for row in chunk.itertuples(index=False)
            ]
        )
        for result in results:
            requests += result.requests
            counts[result.status] += 1
        if not dry_run:
            with warehouse.transaction() as tx:
                set_outbox_status(
                    tx,
                    pd.DataFrame(
                        {
                            "event_id": chunk["event_id"].tolist(),
                            "status": [_trigger_status(result) for result in results],
                            "code": [result.code for result in results],
                            "error": [result.error for result in results],
                        }
                    ),
                )
                crash_point("trigger_bookkeeping")

    # This run's outcomes only, none included: the rejection share check reads them.
    every = pd.concat(outcomes, ignore_index=True) if outcomes else _with_zoho_ids(NO_OUTCOMES, {})
    warehouse.replace_table(EVENT_OUTCOMES, every)
    if len(every):
        unknown = int(
            ((every["outcome"] == "failed") & every["maybe_delivered"].astype(bool)).sum()
        )
        _fail_on_undelivered(
            every,
            "events",
            f"{unknown} of them may have reached CleverTap (unknown outcome: the next run "
            "resends or holds them, as clevertap.unknown_outcome_policy says); the rest stay "
            "pending",
        )
    failed_triggers = counts["failed"] - (
        int((every["outcome"] == "failed").sum()) if len(every) else 0
    )
    if failed_triggers:
        raise dg.Failure(
            description=f"{failed_triggers} of {len(campaigns)} campaign triggers failed; the "
            "next run sends them, or, where CleverTap may have acted, resends or holds them as "
            "clevertap.unknown_outcome_policy says"
        )
    return dg.MaterializeResult(metadata=_sync_metadata(counts, requests, every, dry_run))


def _trigger_status(result: TriggerResult) -> str:
    """The outbox status a campaign trigger's answer leaves: sent, pending again, or sending
    (an unknown outcome) when CleverTap may have acted on a request that failed."""
    if result.status == "accepted":
        return SENT
    if result.status == "failed" and result.maybe_delivered:
        return SENDING
    return PENDING


def _fail_on_undelivered(outcomes: pd.DataFrame, what: str, next_step: str) -> None:
    """Fail the step, after every outcome is stored, when records could not be delivered: a run
    that CleverTap's outage or a storm longer than the retries kept from delivering must not
    look like a success."""
    failed = outcomes[outcomes["outcome"] == "failed"]
    if len(failed):
        raise dg.Failure(
            description=(
                f"{len(failed)} of {len(outcomes)} {what} were not delivered after retries "
                f"({_scrub(failed['error'].iloc[0])}); {next_step}"
            ),
            metadata={"undelivered": len(failed)},
        )


def _record_event_outcomes(tx: WarehouseTransaction, frame: pd.DataFrame, run_id: str) -> None:
    status = frame["outcome"].map(
        {"accepted": SENT, "rejected": REJECTED, "rejected_locally": REJECTED}
    )
    # A failure CleverTap may have processed stays `sending`: an unknown outcome for the policy.
    failed = frame["outcome"] == "failed"
    status = status.where(~failed, frame["maybe_delivered"].map({True: SENDING, False: PENDING}))
    set_outbox_status(
        tx,
        pd.DataFrame(
            {
                "event_id": frame["key"],
                "status": status,
                "code": frame["code"],
                "error": frame["error"],
            }
        ),
    )
    clear_rejections(tx, "event", frame.loc[frame["outcome"] == "accepted", "key"].tolist())
    rejected = frame[frame["outcome"].isin(REFUSED)]
    record_rejections(tx, _rejection_rows(rejected, "event", run_id))


def _event_record(row: Any, context: dg.AssetExecutionContext) -> dict[str, Any]:
    return build_event_record(
        row.identity, row.name, orjson.loads(row.payload), _moment(row.event_time)
    )


def _with_zoho_ids(outcomes: pd.DataFrame, zoho_id_of: Mapping[str, str]) -> pd.DataFrame:
    """Upload outcomes (`UploadReport.as_frame`) with the Zoho id of each record's key in
    `contact_id` (a Contact for profiles, a Deal for events)."""
    return outcomes.assign(contact_id=outcomes["key"].map(zoho_id_of).astype("str"))


def _rejection_rows(rejected: pd.DataFrame, kind: str, run_id: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "record_key": rejected["key"].astype("str"),
            "kind": kind,
            "zoho_id": rejected["contact_id"].astype("str"),
            "outcome": rejected["outcome"].astype("str"),
            "code": rejected["code"].astype("Int64"),
            "error": rejected["error"].astype("str"),
            "run_id": run_id,
        }
    )


def _sync_metadata(
    counts: dict[str, int], requests: int, outcomes: pd.DataFrame, dry_run: bool
) -> dict[str, Any]:
    sent = counts.get("accepted", 0) + counts.get("rejected", 0)
    rejected = counts.get("rejected", 0) + counts.get("rejected_locally", 0)
    metadata: dict[str, Any] = {
        "dry run": dry_run,
        "accepted": counts.get("accepted", 0),
        "rejected by CleverTap": counts.get("rejected", 0),
        "rejected locally": counts.get("rejected_locally", 0),
        "failed after retries": counts.get("failed", 0),
        "would send (dry run)": counts.get("dry_run", 0),
        "clevertap requests": requests,
        "rejection share": round(rejected / max(sent + counts.get("rejected_locally", 0), 1), 4),
    }
    refused = outcomes[outcomes["outcome"].isin(REFUSED)] if len(outcomes) else outcomes
    if len(refused):
        preview = refused.head(PREVIEW_ROWS)
        metadata["rejections (preview)"] = dg.MetadataValue.md(
            pd.DataFrame(
                {
                    "record": preview["key"].map(mask_identity),
                    "zoho id": preview["contact_id"],
                    "code": preview["code"],
                    "error": preview["error"].map(_scrub),
                }
            ).to_markdown(index=False)
        )
    return metadata


def push_identity_by_contact(
    warehouse: WarehouseResource, contact_ids: Iterable[str] | None = None
) -> pd.Series:
    """The identity each Contact's profile is pushed under (its duplicate group's canonical);
    with `contact_ids`, for those Contacts only."""
    columns = ["module", "zoho_id", "status", "canonical_identity"]
    if contact_ids is None:
        members = warehouse.read_table(MEMBERS_TABLE, columns=columns)
    else:
        members = warehouse.read_rows(MEMBERS_TABLE, "zoho_id", contact_ids, columns=columns)
    if members.empty:
        return pd.Series(dtype="str")
    pushed = members[(members["status"] == PUSH) & (members["module"] == "Contacts")]
    return pushed.set_index("zoho_id")["canonical_identity"].astype("str")


def _snapshot_rows(deals: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "deal_id": deals["id"].astype("str"),
            "stage": deals["Stage"].astype("str"),
            "modified_time": pd.to_datetime(deals["Modified_Time"], utc=True),
        }
    )


def _events_table(outbox: pd.DataFrame) -> pd.DataFrame:
    columns = ["event_id", "kind", "name", "deal_id", "contact_id", "status", "reason", "payload"]
    if outbox.empty:
        return pd.DataFrame({c: pd.Series(dtype="str") for c in [*columns, "event_time"]})
    return outbox[[*columns, "event_time"]]


def _event_id(deal_id: str, previous: str | None, stage: str, moment: pd.Timestamp) -> str:
    return _digest(f"{deal_id}|{previous or ''}|{stage}|{moment.isoformat()}")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _json(value: Any) -> str:
    """Compact JSON with sorted keys, so equal payloads give equal text (and hashes)."""
    return orjson.dumps(value, default=str, option=_JSON_OPTIONS).decode("utf-8")


# NumPy numbers are written as numbers; datetimes go through `default` (str), as any other
# value JSON has no type for.
_JSON_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_PASSTHROUGH_DATETIME


def _moment(value: Any) -> datetime:
    if not _present(value):
        return datetime.now(UTC)
    return pd.Timestamp(value).tz_convert(UTC).to_pydatetime()


def _present(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return False
    return not (isinstance(value, float) and value != value)


def _text(value: Any) -> str | None:
    return str(value) if _present(value) and str(value) != "" else None


def _number(value: Any) -> float | None:
    return float(value) if _present(value) else None


def _scrub(error: Any) -> str:
    """CleverTap's error text for display, with anything like a phone number or email masked."""
    if not _present(error):
        return ""
    text = _EMAIL_LIKE.sub("<email>", str(error))
    return _DIGITS_LIKE.sub("<number>", text)[:160]


_EMAIL_LIKE = re.compile(r"[^\s@]+@[^\s@]+")
_DIGITS_LIKE = re.compile(r"\+?\d[\d\s-]{5,}\d")
