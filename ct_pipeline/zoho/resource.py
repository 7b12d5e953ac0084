"""The Zoho CRM client as a Dagster resource: records, incremental reads, deletions, Bulk Read,
updates and Notes against one org, in the org's own data centre.

Assets take a `ZohoCRMResource` parameter; definitions bind it from the environment
(`ZohoCRMResource.from_env()`), tests and the sandbox by pointing `accounts_url` and `api_domain`
at the emulator. Every read returns a pandas DataFrame whose columns are described in
`ct_pipeline.zoho.frames`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field, PrivateAttr, field_validator
from pyrate_limiter import Limiter
from requests.adapters import BaseAdapter

from ct_pipeline.zoho import bulk, records, writes
from ct_pipeline.zoho.datacenters import DATA_CENTERS, DEFAULT_DATA_CENTER, resolve_hosts
from ct_pipeline.zoho.frames import ModuleSchema
from ct_pipeline.zoho.http import Credentials, RetrySettings, ZohoSession
from ct_pipeline.zoho.records import PAGE_TOKEN_CAP, ZohoRead
from ct_pipeline.zoho.token_store import SharedTokenStore
from ct_pipeline.zoho.writes import NoteDraft, WriteOutcome

logger = logging.getLogger(__name__)

# The lowest edition (Free) allows 5 concurrent calls per org and app; sorted reads count
# against a sub-concurrency limit of 10 (Zoho API limits, Kaizen #203).
DEFAULT_MAX_CONCURRENCY = 5
# A Bulk Read job costs about 55 credits (50 to create, a few status calls, one download) for
# up to 200,000 records; the records API costs 1 credit per 200, so it is cheaper only below
# about 11,000 records. At 20,000 it costs 100 credits and a second or two, against a job that
# waits in Zoho's queue; above that Bulk Read is used.
DEFAULT_BULK_READ_THRESHOLD = 20_000
SUPPORTED_API_VERSIONS = ("v7", "v8")

ENV_CLIENT_ID = "ZOHO_CLIENT_ID"
ENV_CLIENT_SECRET = "ZOHO_CLIENT_SECRET"
ENV_REFRESH_TOKEN = "ZOHO_REFRESH_TOKEN"
ENV_DATA_CENTER = "ZOHO_DATA_CENTER"
ENV_ACCOUNTS_URL = "ZOHO_ACCOUNTS_URL"
ENV_API_DOMAIN = "ZOHO_API_DOMAIN"
ENV_TOKEN_CACHE_DIR = "ZOHO_TOKEN_CACHE_DIR"
# Without ZOHO_TOKEN_CACHE_DIR, processes that share a Dagster instance share tokens here.
TOKEN_CACHE_SUBFOLDER = "zoho_tokens"


class ZohoCRMResource(dg.ConfigurableResource):
    """Reads and writes Zoho CRM records over the REST API (v7/v8), in the org's data centre.

    Reads return DataFrames with `id` plus the requested fields (lookups flattened to
    `<Field>_id` / `<Field>_name`, user lookups also `<Field>_email`; datetimes UTC). Calls are
    retried on 429 and 5xx with exponential backoff and jitter, at most `max_concurrency` at a
    time, and `usage()` reports the calls and estimated API credits spent.
    """

    # repr=False: a resource printed in a log or a traceback never shows its credentials.
    client_id: str = Field(description="OAuth client id (ZOHO_CLIENT_ID).", repr=False)
    client_secret: str = Field(description="OAuth client secret (ZOHO_CLIENT_SECRET).", repr=False)
    refresh_token: str = Field(description="OAuth refresh token (ZOHO_REFRESH_TOKEN).", repr=False)
    data_center: str = Field(
        default=DEFAULT_DATA_CENTER,
        description="Zoho data centre of the org: " + ", ".join(DATA_CENTERS) + ".",
    )
    accounts_url: str | None = Field(
        default=None, description="Override of the accounts (OAuth) host, e.g. the sandbox."
    )
    api_domain: str | None = Field(
        default=None,
        description="Override of the API domain; by default the token response's api_domain.",
    )
    api_version: str = Field(default="v8", description="CRM API version: v7 or v8.")
    token_cache_dir: str | None = Field(
        default=None,
        description=(
            "Folder where processes of one deployment share the current access token "
            f"({ENV_TOKEN_CACHE_DIR}); Zoho issues at most 10 tokens in 10 minutes per refresh "
            "token. None keeps tokens in this process only."
        ),
    )
    timeout: float = Field(default=60.0, gt=0, description="Seconds to wait for one answer.")
    max_concurrency: int = Field(
        default=DEFAULT_MAX_CONCURRENCY, ge=1, description="Most calls in flight at once."
    )
    max_retries: int = Field(default=5, ge=0, description="Retries of a 429/5xx/network failure.")
    retry_initial_wait: float = Field(
        default=1.0, ge=0, description="Backoff multiplier in seconds (full jitter)."
    )
    retry_max_wait: float = Field(default=60.0, ge=0, description="Longest wait between retries.")
    bulk_read_threshold: int = Field(
        default=DEFAULT_BULK_READ_THRESHOLD,
        ge=0,
        description="read_all uses Bulk Read when the module holds more records than this.",
    )
    bulk_poll_interval: float = Field(
        default=10.0,
        ge=0,
        description=(
            "Longest wait between Bulk Read job status calls; polls start at half a second "
            "and grow to it."
        ),
    )
    bulk_downloads_per_minute: int = Field(
        default=bulk.DOWNLOADS_PER_MINUTE,
        ge=1,
        description="Bulk Read downloads started in any minute; Zoho allows 10, then answers 429.",
    )
    bulk_timeout: float = Field(
        default=3600.0, gt=0, description="Seconds to wait for one Bulk Read job."
    )
    page_token_cap: int = Field(
        default=PAGE_TOKEN_CAP,
        ge=200,
        description="Records one page_token chain reaches (Zoho: 100,000); lower only in tests.",
    )

    _session: ZohoSession | None = PrivateAttr(default=None)
    _schemas: dict[str, ModuleSchema] = PrivateAttr(default_factory=dict)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _downloads: Limiter | None = PrivateAttr(default=None)

    @field_validator("data_center")
    @classmethod
    def _known_data_center(cls, value: str) -> str:
        if isinstance(value, dg.EnvVar):
            return value
        return resolve_hosts(value).data_center

    @field_validator("api_version")
    @classmethod
    def _known_api_version(cls, value: str) -> str:
        if isinstance(value, dg.EnvVar) or value in SUPPORTED_API_VERSIONS:
            return value
        allowed = ", ".join(SUPPORTED_API_VERSIONS)
        raise ValueError(f"api_version {value!r} is not supported; use one of {allowed}")

    @classmethod
    def from_env(cls, **overrides: Any) -> ZohoCRMResource:
        """A resource configured from the ZOHO_* environment variables.

        The credentials are bound as `dg.EnvVar`s, so Dagster shows the variable names and never
        their values. `overrides` set the tuning fields (timeouts, concurrency, thresholds).
        """
        missing = [
            name
            for name in (ENV_CLIENT_ID, ENV_CLIENT_SECRET, ENV_REFRESH_TOKEN)
            if not os.environ.get(name)
        ]
        if missing:
            raise ValueError(
                f"{', '.join(missing)} not set: export the Zoho OAuth client id, secret and "
                "refresh token (or start `ct-pipeline sandbox` and use the variables it prints)"
            )
        settings: dict[str, Any] = {
            "client_id": dg.EnvVar(ENV_CLIENT_ID),
            "client_secret": dg.EnvVar(ENV_CLIENT_SECRET),
            "refresh_token": dg.EnvVar(ENV_REFRESH_TOKEN),
            "data_center": os.environ.get(ENV_DATA_CENTER) or DEFAULT_DATA_CENTER,
            "accounts_url": os.environ.get(ENV_ACCOUNTS_URL) or None,
            "api_domain": os.environ.get(ENV_API_DOMAIN) or None,
            "token_cache_dir": default_token_cache_dir(),
        }
        settings.update(overrides)
        return cls(**settings)

    # ------------------------------------------------------------------------------- reads

    def read_records(
        self,
        module: str,
        fields: Sequence[str],
        modified_since: datetime | None = None,
        *,
        inclusive_since: bool = False,
    ) -> ZohoRead:
        """Records of `module` modified at or after `modified_since` (all when None), and the
        new cursor. The cursor's own second is re-read, so upsert the result by id.
        `inclusive_since`: Zoho was seen to include If-Modified-Since's own second (a read's
        `server_inclusive`), so the second before `modified_since` need not be asked for."""
        session = self._client()
        return records.read_records(
            session,
            module,
            fields,
            self._schema(module),
            modified_since,
            page_token_cap=self.page_token_cap,
            max_workers=self.max_concurrency,
            inclusive_since=inclusive_since,
        )

    def read_deleted(self, module: str, since: datetime | None) -> pd.DataFrame:
        """Records of `module` deleted at or after `since`: columns `frames.DELETED_COLUMNS`
        (id, deleted_time, type, display_name, deleted_by_id/_name, created_by_id/_name)."""
        return records.read_deleted(self._client(), module, since)

    def read_all(self, module: str, fields: Sequence[str]) -> pd.DataFrame:
        """Every record of `module`: Bulk Read above `bulk_read_threshold` records, else the
        records API. Same columns and rows either way (converted Leads included).

        The size comes from Get Record Count (one call); where that is unavailable the records
        API reads until it passes the threshold, then hands over to Bulk Read. A records-API
        read that records kept moving through (`ZohoRead.held_back`) may have passed one over;
        Bulk Read, which exports one snapshot, then reads the module instead.
        """
        count = records.count_records(self._client(), module)
        if count is not None and count > self.bulk_read_threshold:
            return self.bulk_read(module, fields)
        try:
            read = records.read_records(
                self._client(),
                module,
                fields,
                self._schema(module),
                page_token_cap=self.page_token_cap,
                max_workers=self.max_concurrency,
                give_up_after=self.bulk_read_threshold if count is None else None,
            )
        except records.ModuleTooLarge:
            logger.info(
                "%s holds more than %d records; reading it through Bulk Read",
                module,
                self.bulk_read_threshold,
            )
            return self.bulk_read(module, fields)
        if read.held_back:
            logger.warning(
                "%s kept changing while the records API read it; reading it through Bulk Read",
                module,
            )
            return self.bulk_read(module, fields)
        return read.records

    def bulk_read(self, module: str, fields: Sequence[str]) -> pd.DataFrame:
        """Every record of `module` through Bulk Read jobs (200,000 records per job)."""
        return bulk.bulk_read(
            self._client(),
            module,
            fields,
            self._schema(module),
            poll_interval=self.bulk_poll_interval,
            timeout=self.bulk_timeout,
            downloads=self._download_pacer(),
        )

    def mount_transport(self, prefix: str, adapter: BaseAdapter) -> None:
        """Send this client's calls to URLs starting with `prefix` (e.g. "https://") through
        `adapter`, a `requests` transport adapter: a proxy or gateway the network requires, or
        a test's router to an emulator standing in for a data centre's real hosts. Token
        requests and API calls both go through it."""
        self._client().mount(prefix, adapter)

    def _download_pacer(self) -> Limiter:
        with self._lock:
            if self._downloads is None:
                self._downloads = bulk.download_pacer(self.bulk_downloads_per_minute)
            return self._downloads

    def unknown_fields(self, module: str, fields: Sequence[str]) -> list[str]:
        """The names in `fields` that the module's field metadata does not list (renamed or
        removed in Zoho, or hidden from the API user); empty when metadata is unavailable."""
        schema = self._schema(module)
        if not schema.from_metadata:
            return []
        return [name for name in fields if name != "id" and schema.kind(name) is None]

    def has_changes(self, module: str, since: datetime) -> bool:
        """Whether a record of `module` changed after `since` (one call, one credit)."""
        return records.has_changes(self._client(), module, since)

    # ------------------------------------------------------------------------------ writes

    def update_records(
        self,
        module: str,
        rows: Sequence[Mapping[str, Any]],
        trigger: Sequence[str] | None = None,
    ) -> list[WriteOutcome]:
        """Update records (each row a dict with `id` and the fields to set), 100 per call.

        Returns one outcome per row in input order; a partly failed batch (HTTP 207) does not
        raise. `trigger` (e.g. `[]` to skip workflows) is passed to Zoho when given.
        """
        return writes.update_records(
            self._client(), module, rows, trigger=trigger, max_workers=self.max_concurrency
        )

    def create_notes(self, notes: Sequence[NoteDraft]) -> list[WriteOutcome]:
        """Create Notes on their parent records, 100 per call; one outcome per note."""
        return writes.create_notes(self._client(), notes, max_workers=self.max_concurrency)

    def usage(self) -> dict[str, Any]:
        """Calls and estimated API credits spent by this resource, by kind of endpoint."""
        with self._lock:
            session = self._session
        if session is None:
            return {
                "calls": {},
                "credits": {},
                "total_calls": 0,
                "total_credits": 0,
                "credits_remaining": None,
            }
        return session.usage()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        """Close pooled connections at the end of a run."""
        with self._lock:
            if self._session is not None:
                self._session.close()

    # ---------------------------------------------------------------------------- plumbing

    def _client(self) -> ZohoSession:
        with self._lock:
            if self._session is None:
                self._session = ZohoSession(
                    credentials=Credentials(
                        client_id=_resolved(self.client_id),
                        client_secret=_resolved(self.client_secret),
                        refresh_token=_resolved(self.refresh_token),
                    ),
                    hosts=resolve_hosts(
                        _resolved(self.data_center),
                        _resolved(self.accounts_url),
                        _resolved(self.api_domain),
                    ),
                    api_version=self.api_version,
                    timeout=self.timeout,
                    max_concurrency=self.max_concurrency,
                    retry=RetrySettings(
                        max_retries=self.max_retries,
                        initial_wait=self.retry_initial_wait,
                        max_wait=self.retry_max_wait,
                    ),
                    token_store=(
                        SharedTokenStore(self.token_cache_dir) if self.token_cache_dir else None
                    ),
                )
            return self._session

    def _schema(self, module: str) -> ModuleSchema:
        with self._lock:
            cached = self._schemas.get(module)
        if cached is not None:
            return cached
        schema = records.load_schema(self._client(), module)
        with self._lock:
            self._schemas[module] = schema
        return schema


def _resolved(value: Any) -> Any:
    """The value of a setting; an `EnvVar` outside a Dagster run is read from the environment."""
    if isinstance(value, dg.EnvVar):
        resolved = value.get_value()
        if resolved is None:
            raise ValueError(f"{value.env_var_name} is not set")
        return resolved
    return value


def default_token_cache_dir(environ: Mapping[str, str] | None = None) -> str | None:
    """Where run processes share the Zoho access token: ZOHO_TOKEN_CACHE_DIR, else a folder in
    DAGSTER_HOME (the daemon and the runs it launches share it), else nowhere."""
    environ = os.environ if environ is None else environ
    if environ.get(ENV_TOKEN_CACHE_DIR):
        return environ[ENV_TOKEN_CACHE_DIR]
    if environ.get("DAGSTER_HOME"):
        return os.path.join(environ["DAGSTER_HOME"], TOKEN_CACHE_SUBFOLDER)
    return None
