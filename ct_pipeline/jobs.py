"""The sync jobs: a nightly full refresh and the incremental run the sensors start."""

import dagster as dg

from ct_pipeline.assets.common import FULL_REFRESH_TAG, SYNC_TAG

# Everything from the Zoho tables to the CleverTap uploads; the write-back flow has its own job.
SYNC_SELECTION = dg.AssetSelection.groups("zoho", "identity", "segments", "clevertap")

nightly_full_sync = dg.define_asset_job(
    name="nightly_full_sync",
    selection=SYNC_SELECTION,
    description=(
        "Re-reads every synced Zoho module whole (Bulk Read for large ones), applies what "
        "differs from the warehouse (edits the Modified_Time cursor missed, deletions), derives "
        "again the identities and profiles those records touch, and pushes what changed since "
        "the last accepted push. Safe to run twice: the second run uploads nothing. Tag a run "
        "ct_pipeline/full_derivation=true to rebuild every derived table."
    ),
    tags={FULL_REFRESH_TAG: "true", SYNC_TAG: "true"},
    # One process: the steps share a warehouse connection pool and start in milliseconds.
    executor_def=dg.in_process_executor,
)

incremental_sync = dg.define_asset_job(
    name="incremental_sync",
    selection=SYNC_SELECTION,
    description=(
        "Reads only the Zoho records modified (or deleted) since the stored cursors, then "
        "pushes the profiles and stage events that changed."
    ),
    tags={SYNC_TAG: "true"},
    executor_def=dg.in_process_executor,
)

SYNC_JOBS = [nightly_full_sync, incremental_sync]
