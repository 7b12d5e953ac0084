"""The resources the code location binds, configured from the environment.

Secrets are `EnvVar`s, resolved only when a run starts and never shown in the UI; host
overrides and the sync configuration's tuning are read when the code location loads.
"""

from __future__ import annotations

import os

import dagster as dg

from ct_pipeline.clevertap import CleverTapResource
from ct_pipeline.config import SyncConfigResource, load_sync_config
from ct_pipeline.warehouse import WarehouseResource
from ct_pipeline.zoho import ZohoCRMResource
from ct_pipeline.zoho.resource import default_token_cache_dir


def environment_resources() -> dict[str, dg.ConfigurableResource]:
    """Resources configured from the environment variables listed in the README."""
    config = load_sync_config()
    return {
        "zoho": ZohoCRMResource(
            client_id=dg.EnvVar("ZOHO_CLIENT_ID"),
            client_secret=dg.EnvVar("ZOHO_CLIENT_SECRET"),
            refresh_token=dg.EnvVar("ZOHO_REFRESH_TOKEN"),
            data_center=os.environ.get("ZOHO_DATA_CENTER") or "in",
            accounts_url=os.environ.get("ZOHO_ACCOUNTS_URL") or None,
            api_domain=os.environ.get("ZOHO_API_DOMAIN") or None,
            token_cache_dir=default_token_cache_dir(),
            max_concurrency=config.zoho.max_concurrency,
            bulk_read_threshold=config.zoho.bulk_read_threshold,
        ),
        "clevertap": CleverTapResource(
            account_id=dg.EnvVar("CLEVERTAP_ACCOUNT_ID"),
            passcode=dg.EnvVar("CLEVERTAP_PASSCODE"),
            region=os.environ.get("CLEVERTAP_REGION") or "in1",
            api_url=os.environ.get("CLEVERTAP_API_URL") or None,
            batch_size=config.clevertap.batch_size,
            max_concurrency=config.clevertap.max_concurrency,
        ),
        "warehouse": WarehouseResource(),
        "sync_config": SyncConfigResource(),
    }
