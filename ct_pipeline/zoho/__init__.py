"""Zoho CRM client: the `ZohoCRMResource` Dagster resource and the types its methods return."""

from ct_pipeline.zoho.datacenters import DATA_CENTERS, resolve_hosts
from ct_pipeline.zoho.frames import DELETED_COLUMNS, output_columns
from ct_pipeline.zoho.http import ZohoAPIError, ZohoAuthError, ZohoError, ZohoScopeError
from ct_pipeline.zoho.records import ZohoRead
from ct_pipeline.zoho.resource import ZohoCRMResource
from ct_pipeline.zoho.writes import NoteDraft, WriteOutcome

__all__ = [
    "DATA_CENTERS",
    "DELETED_COLUMNS",
    "NoteDraft",
    "WriteOutcome",
    "ZohoAPIError",
    "ZohoAuthError",
    "ZohoCRMResource",
    "ZohoError",
    "ZohoRead",
    "ZohoScopeError",
    "output_columns",
    "resolve_hosts",
]
