"""CleverTap -> Zoho: the webhook inbox, the write-back to Contacts, its job and checks.

The receiver (`ct-pipeline webhook-server`, `ct_pipeline.webhooks`) stores deliveries in the
inbox and answers CleverTap at once. `webhook_inbox_sensor` (in `ct_pipeline.sensors`) starts the
`crm_writeback` job while events are pending; the job matches each event to a Contact and
writes the configured field and a Note. The fields written here are never synced forward (the
configuration refuses a field that is both written back and mapped to CleverTap), so a
write-back cannot echo back to CleverTap.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd

from ct_pipeline.assets import schemas
from ct_pipeline.assets.clevertap import clevertap_profile_sync
from ct_pipeline.assets.common import (
    OWNERS,
    WAREHOUSE_KIND,
    ZOHO_POOL,
    is_dry_run,
    warehouse_table_metadata,
)
from ct_pipeline.assets.identity import contact_identities
from ct_pipeline.config import SyncConfigResource
from ct_pipeline.warehouse import WarehouseResource
from ct_pipeline.webhooks.inbox import (
    APPLIED,
    INBOX_TABLE,
    MATCHED,
    PARKED,
    PENDING_STATUSES,
    RECEIVED,
    count_by_status,
    ensure_inbox_tables,
    read_inbox,
    update_events,
)
from ct_pipeline.webhooks.matching import (
    load_contact_index,
    match_events,
    normalised_identities,
    writeback_values,
)
from ct_pipeline.webhooks.writeback import (
    FIELD_SUPERSEDED,
    FIELD_WRITTEN,
    WRITEBACK_LOG_TABLE,
    apply_matched_events,
)
from ct_pipeline.zoho import ZohoCRMResource

GROUP = "writeback"
JOB_NAME = "crm_writeback"
WRITEBACK_TAG = "ct_pipeline/writeback"
# A pending event older than this means the write-back is not running or keeps failing.
STALE_AFTER = timedelta(hours=6)


@dg.asset(
    name=INBOX_TABLE,
    group_name=GROUP,
    deps=[contact_identities, clevertap_profile_sync],
    kinds={"clevertap", "pandas", WAREHOUSE_KIND},
    owners=OWNERS,
    metadata={"dagster/column_schema": schemas.WEBHOOK_INBOX},
    description=(
        "CleverTap webhook events, one row per distinct event (a delivery CleverTap retries "
        "adds nothing), as stored by the webhook receiver with the raw body in "
        "clevertap_webhook_deliveries. Materialising matches each new event to one Zoho "
        "Contact (by crm_contact_id, then by the identity CleverTap accepted from us, then by "
        "normalised identity, email and phone) and resolves the field and value the "
        "configuration maps its event to; an event matching no Contact, several, or an event "
        "not configured is parked with the reason."
    ),
)
def clevertap_webhook_inbox(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    sync_config: SyncConfigResource,
) -> dg.MaterializeResult:
    config = sync_config.load()
    ensure_inbox_tables(warehouse)
    received = read_inbox(warehouse, [RECEIVED])
    outcome = pd.DataFrame()
    if len(received):
        normalised = normalised_identities(received, config.identity.default_region)
        candidates = pd.concat(
            [received["identity"], normalised["identity"], normalised["email"], normalised["phone"]]
        ).dropna()
        index = load_contact_index(warehouse, candidates.astype("str"))
        matches = match_events(received, index, normalised)
        values = writeback_values(received, config.writeback)
        outcome = _inbox_outcome(received, matches, values)
        with warehouse.transaction() as tx:
            update_events(tx, outcome)

    matched = outcome[outcome["status"] == MATCHED] if len(outcome) else outcome
    parked = outcome[outcome["status"] == PARKED] if len(outcome) else outcome
    context.log.info(
        f"{len(received)} new webhook events: {len(matched)} matched, {len(parked)} parked"
    )
    return dg.MaterializeResult(
        metadata={
            **warehouse_table_metadata(warehouse, INBOX_TABLE),
            "new events": len(received),
            "matched": len(matched),
            "matched by": dg.MetadataValue.json(
                matched["matched_by"].value_counts().to_dict() if len(matched) else {}
            ),
            "parked": len(parked),
            "parked by reason": dg.MetadataValue.json(
                parked["reason"].value_counts().to_dict() if len(parked) else {}
            ),
            "inbox by status": dg.MetadataValue.json(count_by_status(warehouse)),
        }
    )


@dg.multi_asset(
    # The job is called crm_writeback too, and Dagster wants op and job names distinct.
    name="write_crm_writeback",
    group_name=GROUP,
    pool=ZOHO_POOL,
    specs=[
        dg.AssetSpec(
            WRITEBACK_LOG_TABLE,
            deps=[clevertap_webhook_inbox],
            kinds={"zoho", "pandas", WAREHOUSE_KIND},
            owners=OWNERS,
            metadata={"dagster/column_schema": schemas.CRM_WRITEBACK_LOG},
            description=(
                "Writes each matched webhook event to its Zoho Contact: the configured "
                "lifecycle field (one update per Contact, 100 per call; a later event of the "
                "same field wins) and a Note naming the event and its date. Each Zoho answer is "
                "appended to this table (event, step, outcome, Zoho code; no personal data). A "
                "call Zoho fails leaves its events pending for the next run and fails this run; "
                "a record Zoho refuses parks its event with the code. A dry run writes nothing."
            ),
        )
    ],
)
def crm_writeback(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    zoho: ZohoCRMResource,
    sync_config: SyncConfigResource,
) -> dg.MaterializeResult:
    config = sync_config.load()
    ensure_inbox_tables(warehouse)
    if is_dry_run(context):
        due = len(read_inbox(warehouse, [MATCHED]))
        context.log.info(f"dry run: {due} matched events would be written to Zoho")
        return dg.MaterializeResult(metadata={"dry run": True, "would write": due})

    report = apply_matched_events(warehouse, zoho, config.writeback, context.run.run_id)
    metadata = {
        **warehouse_table_metadata(warehouse, WRITEBACK_LOG_TABLE),
        **{
            key: dg.MetadataValue.json(value) if isinstance(value, dict) else value
            for key, value in report.as_metadata().items()
        },
        "zoho usage": dg.MetadataValue.json(zoho.usage()),
    }
    context.log.info(
        f"{report.applied} events applied, {sum(report.parked.values())} parked, "
        f"{report.retry_later} left pending"
    )
    if report.zoho_failure:
        raise dg.Failure(
            description=(
                f"Zoho failed during the write-back ({report.zoho_failure}); "
                f"{report.retry_later} events stay pending and the next run retries them"
            ),
            metadata=metadata,
        )
    return dg.MaterializeResult(metadata=metadata)


crm_writeback_job = dg.define_asset_job(
    name=JOB_NAME,
    selection=dg.AssetSelection.groups(GROUP),
    description=(
        "Matches pending CleverTap webhook events to Zoho Contacts and writes their field and "
        "Note. Safe to run any time: applied events are never written again."
    ),
    tags={WRITEBACK_TAG: "true"},
    executor_def=dg.in_process_executor,
)


@dg.asset_check(
    asset=clevertap_webhook_inbox,
    description=(
        f"No webhook event has waited more than {STALE_AFTER.total_seconds() / 3600:g} hours: "
        "older pending events mean the sensor is off or Zoho keeps failing."
    ),
)
def webhook_inbox_not_stalled(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    pending = read_inbox(warehouse, PENDING_STATUSES)
    cutoff = datetime.now(UTC) - STALE_AFTER
    stale = pending[pending["received_at"] < cutoff] if len(pending) else pending
    oldest = pending["received_at"].min() if len(pending) else None
    return dg.AssetCheckResult(
        passed=stale.empty,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"{len(stale)} events pending for more than {STALE_AFTER}" if len(stale) else None
        ),
        metadata={
            "pending": len(pending),
            "stale": len(stale),
            "oldest pending received at": str(oldest) if oldest is not None else "",
        },
    )


@dg.asset_check(
    asset=WRITEBACK_LOG_TABLE,
    description=(
        "Every event marked applied has its field written (or overridden by a later event) and "
        "a Note id from Zoho: nothing is called applied that Zoho did not confirm."
    ),
)
def applied_events_confirmed_by_zoho(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    applied = read_inbox(warehouse, [APPLIED])
    unconfirmed = applied[
        ~applied["field_status"].isin([FIELD_WRITTEN, FIELD_SUPERSEDED]) | applied["note_id"].isna()
    ]
    return dg.AssetCheckResult(
        passed=unconfirmed.empty,
        description=(
            f"{len(unconfirmed)} applied events lack a confirmed field or Note"
            if len(unconfirmed)
            else None
        ),
        metadata={"applied": len(applied), "unconfirmed": len(unconfirmed)},
    )


def _inbox_outcome(
    received: pd.DataFrame, matches: pd.DataFrame, values: pd.DataFrame
) -> pd.DataFrame:
    """The inbox columns matching sets: matched with field and value, or parked with a reason."""
    reason = values["reason"].where(values["reason"].notna(), matches["reason"])
    return pd.DataFrame(
        {
            "event_id": received["event_id"],
            "status": [PARKED if pd.notna(why) else MATCHED for why in reason],
            "reason": reason,
            "contact_id": matches["contact_id"],
            "matched_by": matches["matched_by"],
            "field": values["field"],
            "value": values["value"],
            "event_date": values["event_date"],
        }
    )


WRITEBACK_ASSETS = [clevertap_webhook_inbox, crm_writeback]
WRITEBACK_JOBS = [crm_writeback_job]
WRITEBACK_CHECKS = [webhook_inbox_not_stalled, applied_events_confirmed_by_zoho]
