"""The Dagster assets, by stage of the flow: zoho, identity, segments, clevertap."""

from ct_pipeline.assets.clevertap import (
    clevertap_event_batches,
    clevertap_event_sync,
    clevertap_profile_batches,
    clevertap_profile_sync,
    deal_stage_events,
)
from ct_pipeline.assets.identity import (
    contact_identities,
    duplicate_profiles,
    identity_review_queue,
)
from ct_pipeline.assets.reconciliation import clevertap_reconciliation
from ct_pipeline.assets.segments import profile_attributes
from ct_pipeline.assets.zoho import ZOHO_ASSETS

ALL_ASSETS = [
    *ZOHO_ASSETS,
    contact_identities,
    duplicate_profiles,
    identity_review_queue,
    profile_attributes,
    clevertap_reconciliation,
    deal_stage_events,
    clevertap_profile_batches,
    clevertap_event_batches,
    clevertap_profile_sync,
    clevertap_event_sync,
]
