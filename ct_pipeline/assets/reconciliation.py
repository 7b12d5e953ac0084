"""Reconciliation: before a person's first push, ask CleverTap whether it already knows them.

The app's SDK may have created the profile at login under another identity (an email where the
CRM prefers the phone, say). Uploading under our identity would then create a second profile;
CleverTap's integration guides recommend looking people up first. Each person is looked up once:
the decision is kept, and later runs skip everyone already reconciled or pushed.
"""

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dagster as dg
import pandas as pd

from ct_pipeline.assets import schemas
from ct_pipeline.assets.common import (
    CLEVERTAP_POOL,
    OWNERS,
    WAREHOUSE_KIND,
    is_dry_run,
    mask_identity,
)
from ct_pipeline.assets.segments import TABLE as PROFILE_TABLE
from ct_pipeline.assets.segments import profile_attributes
from ct_pipeline.clevertap import CleverTapResource
from ct_pipeline.config import SyncConfigResource
from ct_pipeline.warehouse import WarehouseResource
from ct_pipeline.warehouse.state import PUSHED_PROFILES

TABLE = "clevertap_reconciliation"
# Decisions, one per person.
NEW = "new"
SAME = "same_identity"
OTHER = "other_identity"
CONFLICT = "conflict"


@dg.asset(
    name=TABLE,
    group_name="clevertap",
    deps=[profile_attributes],
    kinds={"clevertap", "pandas", WAREHOUSE_KIND},
    pool=CLEVERTAP_POOL,
    owners=OWNERS,
    metadata={"dagster/column_schema": schemas.RECONCILIATION},
    description=(
        "For people never pushed before, what CleverTap already holds: looked up by identity and "
        "by email (throttled to CleverTap's limit for non-upload calls). A profile held under "
        "another identity is updated under that identity (`upload_identity`); answers naming two "
        "different profiles are a `conflict`, held for review. Off unless "
        "clevertap.reconcile_new_profiles is set; a re-run makes no lookups for people already "
        "reconciled. A dry run's decisions are provisional: the next real run asks again."
    ),
)
def clevertap_reconciliation(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    clevertap: CleverTapResource,
    sync_config: SyncConfigResource,
) -> dg.MaterializeResult:
    dry_run = is_dry_run(context)
    if not dry_run:
        forget_provisional_decisions(warehouse)
    if not sync_config.load().clevertap.reconcile_new_profiles:
        return dg.MaterializeResult(metadata={"enabled": False, "lookups": 0})
    profiles = warehouse.read_table(PROFILE_TABLE, columns=["identity", "Email", "crm_contact_id"])
    done = set(warehouse.read_table(TABLE, columns=["identity"])["identity"])
    done |= set(warehouse.read_table(PUSHED_PROFILES, columns=["identity"])["identity"])
    new = profiles[~profiles["identity"].isin(done)]

    with ThreadPoolExecutor(max_workers=clevertap.lookup_concurrency) as pool:
        answers = list(pool.map(lambda row: _reconcile(clevertap, *row), _people(new)))
    decisions = pd.DataFrame(
        answers, columns=["identity", "decision", "upload_identity", "lookups"]
    ).astype({"lookups": "int64"})
    if len(decisions):
        # A dry run's answers show what the upload would do; the real run asks again, since
        # the app may create a profile in between.
        stored = decisions.drop(columns=["lookups"]).assign(provisional=dry_run)
        warehouse.upsert(TABLE, stored, key=["identity"])

    counts = decisions["decision"].value_counts().to_dict()
    context.log.info(f"reconciled {len(decisions)} new people: {counts}")
    conflicts = decisions[decisions["decision"] == CONFLICT].head(10)
    return dg.MaterializeResult(
        metadata={
            "enabled": True,
            "people looked up": len(decisions),
            "lookups": int(decisions["lookups"].sum()),
            "decisions": dg.MetadataValue.json(counts),
            "conflicts (preview)": dg.MetadataValue.md(
                pd.DataFrame({"identity": conflicts["identity"].map(mask_identity)}).to_markdown(
                    index=False
                )
            ),
        }
    )


def forget_provisional_decisions(warehouse: WarehouseResource) -> None:
    """Drop the decisions a dry run made, before a real run reconciles."""
    if "provisional" in warehouse.column_names(TABLE):
        with warehouse.transaction() as tx:
            tx.execute(f"DELETE FROM {TABLE} WHERE provisional = :yes", {"yes": True})


def upload_identities(warehouse: WarehouseResource) -> tuple[pd.Series, set[str]]:
    """The identity to upload each person under, and the identities held for a conflict."""
    decisions = warehouse.read_table(TABLE, columns=["identity", "decision", "upload_identity"])
    held = set(decisions.loc[decisions["decision"] == CONFLICT, "identity"])
    moved = decisions[decisions["decision"] == OTHER]
    return moved.set_index("identity")["upload_identity"].astype("str"), held


def _people(profiles: pd.DataFrame) -> list[tuple[str, str | None]]:
    emails = profiles["Email"].astype("object").where(profiles["Email"].notna(), None)
    return list(zip(profiles["identity"], emails, strict=True))


def _reconcile(
    clevertap: CleverTapResource, identity: str, email: str | None
) -> tuple[str, str, str, int]:
    by_identity = clevertap.lookup_profile(identity=identity)
    lookups = 1
    by_email = None
    if email and email != identity:
        by_email = clevertap.lookup_profile(email=email)
        lookups += 1
    if by_identity is not None and by_email is not None:
        if _profile_key(by_identity) != _profile_key(by_email):
            return identity, CONFLICT, identity, lookups
        return identity, SAME, identity, lookups
    if by_identity is not None:
        return identity, SAME, identity, lookups
    if by_email is not None:
        existing = by_email.get("identity")
        if existing and existing != identity:
            return identity, OTHER, str(existing), lookups
        return identity, SAME, identity, lookups
    return identity, NEW, identity, lookups


def _profile_key(record: dict[str, Any]) -> str:
    """What tells two CleverTap profiles apart: the identity, else the first objectId."""
    if record.get("identity"):
        return str(record["identity"])
    for platform in record.get("platformInfo") or []:
        if platform.get("objectId"):
            return str(platform["objectId"])
    return repr(sorted(record.items()))
