"""CleverTap client: the `CleverTapResource`, its result types and the upload record builders."""

from ct_pipeline.clevertap.http import REGION_HOSTS, REGIONS, UPLOAD_MAX_RECORDS, base_url_for
from ct_pipeline.clevertap.payloads import (
    build_event_record,
    build_profile_record,
    clevertap_date,
    epoch_seconds,
    validate_record,
)
from ct_pipeline.clevertap.resource import BatchCallback, CleverTapError, CleverTapResource
from ct_pipeline.clevertap.results import (
    BatchResult,
    ItemOutcome,
    Outcome,
    PlannedRequest,
    TriggerResult,
    UploadItem,
    UploadReport,
)

__all__ = [
    "REGIONS",
    "REGION_HOSTS",
    "UPLOAD_MAX_RECORDS",
    "BatchCallback",
    "BatchResult",
    "CleverTapError",
    "CleverTapResource",
    "ItemOutcome",
    "Outcome",
    "PlannedRequest",
    "TriggerResult",
    "UploadItem",
    "UploadReport",
    "base_url_for",
    "build_event_record",
    "build_profile_record",
    "clevertap_date",
    "epoch_seconds",
    "validate_record",
]
