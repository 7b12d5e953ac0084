"""Every definition explains itself in the Dagster UI: descriptions, kinds, owners, columns."""

from __future__ import annotations

import dagster as dg
import pytest
import sqlalchemy as sa

from ct_pipeline.assets.common import WAREHOUSE_KIND
from ct_pipeline.definitions import defs

REPOSITORY = defs.get_repository_def()
ASSET_GRAPH = REPOSITORY.asset_graph
ASSET_KEYS = sorted(ASSET_GRAPH.get_all_asset_keys(), key=lambda key: key.to_user_string())
# Assets whose warehouse table is not named after the asset.
TABLE_OF_ASSET = {
    "clevertap_profile_sync": "clevertap_profile_outcomes",
    "clevertap_event_sync": "clevertap_event_outcomes",
}
# Columns the sync configuration adds to a Zoho table (its mapped fields) are not declared.
OPEN_ENDED = "..."
MIN_DESCRIPTION = 40


def _name(key: dg.AssetKey) -> str:
    return key.to_user_string()


@pytest.mark.parametrize("key", ASSET_KEYS, ids=_name)
def test_every_asset_has_a_description_kinds_owners_and_columns(key: dg.AssetKey):
    node = ASSET_GRAPH.get(key)
    schema = node.metadata.get("dagster/column_schema")

    assert len(node.description or "") >= MIN_DESCRIPTION
    assert node.kinds and node.kinds <= {"pandas", "zoho", "clevertap", WAREHOUSE_KIND}
    assert WAREHOUSE_KIND in node.kinds, "every asset keeps a table in the warehouse"
    assert node.owners == ["team:data-engineering"]
    assert isinstance(schema, dg.TableSchema)
    assert len(schema.columns) >= 3
    assert all(column.description for column in schema.columns)


def test_the_api_kinds_mark_the_assets_that_call_each_api():
    zoho = {_name(key) for key in ASSET_KEYS if "zoho" in ASSET_GRAPH.get(key).kinds}
    clevertap = {_name(key) for key in ASSET_KEYS if "clevertap" in ASSET_GRAPH.get(key).kinds}

    assert {"zoho_contacts", "zoho_leads", "zoho_deals", "zoho_cases", "crm_writeback"} <= zoho
    assert {"clevertap_profile_sync", "clevertap_event_sync", "clevertap_reconciliation"} <= (
        clevertap
    )


def test_every_check_job_schedule_and_sensor_has_a_description():
    checks = {key.name: ASSET_GRAPH.get_check_spec(key) for key in ASSET_GRAPH.asset_check_keys}
    jobs = [job for job in REPOSITORY.get_all_jobs() if not job.name.startswith("__")]
    missing = [
        *(f"check {name}" for name, spec in checks.items() if not spec.description),
        *(f"job {job.name}" for job in jobs if not job.description),
        *(f"schedule {s.name}" for s in REPOSITORY.schedule_defs if not s.description),
        *(f"sensor {s.name}" for s in REPOSITORY.sensor_defs if not s.description),
    ]

    assert len(checks) >= 8 and len(jobs) >= 3
    assert not missing


def test_declared_columns_match_the_tables_a_run_writes(finished_demo):
    engine = sa.create_engine(finished_demo.warehouse_url)
    inspector = sa.inspect(engine)
    tables = set(inspector.get_table_names())
    compared = 0

    for key in ASSET_KEYS:
        table = TABLE_OF_ASSET.get(_name(key), _name(key))
        if table not in tables:
            continue  # the demo receives no webhooks, so the write-back tables stay unwritten
        declared = [c.name for c in ASSET_GRAPH.get(key).metadata["dagster/column_schema"].columns]
        actual = {column["name"] for column in inspector.get_columns(table)}
        assert set(declared) - {OPEN_ENDED} <= actual, f"{table} lacks declared columns"
        if OPEN_ENDED not in declared:
            assert actual <= set(declared), f"{table} has undeclared columns"
        compared += 1
    engine.dispose()

    assert compared >= 13
