"""The one-command demo: the sync, end to end, against the sandbox emulators.

It starts both emulators with synthetic contacts, runs `nightly_full_sync`, edits a few CRM
records through the Zoho emulator's admin API (a city, a deal stage, a new high-priority Case),
runs `incremental_sync`, and reports counts at each step. Runs land in the local Dagster
instance, so `make dev` shows them in the UI afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import requests

from ct_pipeline.sandbox.launch import RunningSandbox, start_sandbox
from ct_pipeline.warehouse import WAREHOUSE_URL_ENV_VAR, WarehouseResource

DEMO_CONTACTS = 3_000
DEMO_SEED = 7
DEMO_WAREHOUSE = Path(".ct_pipeline") / "demo.sqlite"
LOCAL_INSTANCE_YAML = """\
# The local Dagster instance used by `make demo` and `make dev` (SQLite, in this folder).
telemetry:
  enabled: false
concurrency:
  pools:
    default_limit: 1
"""
# What the demo does, in order; `run_demo` reports each as it starts.
DEMO_STEPS = (
    "generating the synthetic CRM and starting the emulators",
    "running nightly_full_sync",
    "editing three CRM records",
    "running incremental_sync",
)
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass(frozen=True)
class StepReport:
    """What one step of the demo did, in counts."""

    title: str
    lines: list[str]


def run_demo(
    contacts: int = DEMO_CONTACTS,
    seed: int = DEMO_SEED,
    say: Callable[[str], None] = print,
    on_step: Callable[[str], None] | None = None,
) -> list[StepReport]:
    """Run the demo scenario, calling `say` with each line of the report; return the steps.

    `on_step`, when given, is called with the name of each of the `DEMO_STEPS` as it starts,
    so a caller can show progress.
    """
    step = on_step or (lambda _name: None)
    instance_home = ensure_local_instance()
    warehouse_file = DEMO_WAREHOUSE.resolve()
    warehouse_file.unlink(missing_ok=True)
    say(f"Starting the sandbox with {contacts:,} synthetic contacts (seed {seed})...")
    step(DEMO_STEPS[0])
    sandbox = start_sandbox(contacts=contacts, seed=seed)
    reports: list[StepReport] = []
    try:
        os.environ.update(sandbox.environment())
        os.environ[WAREHOUSE_URL_ENV_VAR] = f"sqlite:///{warehouse_file}"
        from ct_pipeline.definitions import build_definitions

        defs = build_definitions()
        warehouse = WarehouseResource()
        with dg.DagsterInstance.get() as instance:
            step(DEMO_STEPS[1])
            reports.append(_run(defs, instance, "nightly_full_sync", sandbox, warehouse))
            _say(reports[-1], say)
            step(DEMO_STEPS[2])
            edits = make_crm_edits(sandbox.zoho.url, warehouse)
            reports.append(StepReport("CRM edits through the Zoho admin API", edits))
            _say(reports[-1], say)
            step(DEMO_STEPS[3])
            reports.append(_run(defs, instance, "incremental_sync", sandbox, warehouse))
            _say(reports[-1], say)
    finally:
        sandbox.stop()
    say(
        f"Done. Warehouse: {warehouse_file} (query it with sqlite3). Dagster instance: "
        f"{instance_home}. Run `make dev` and open http://127.0.0.1:3000/runs to see both runs, "
        "their asset checks and each asset's metadata."
    )
    return reports


def ensure_local_instance() -> Path:
    """The local instance folder ($DAGSTER_HOME, else .dagster_home), with its dagster.yaml."""
    home = Path(os.environ.get("DAGSTER_HOME") or ".dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(LOCAL_INSTANCE_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def make_crm_edits(zoho_url: str, warehouse: WarehouseResource) -> list[str]:
    """Change a city, move a deal one stage on, and open a high-priority Case, for pushed people."""
    pushed = warehouse.read_table("clevertap_pushed_profiles")
    deals = warehouse.read_table("zoho_deals")
    from ct_pipeline.sandbox.synthetic import PIPELINES

    contact_ids = sorted(pushed["contact_id"])
    city_contact, case_contact = contact_ids[0], contact_ids[1]
    _admin(zoho_url, "Contacts", [{"id": city_contact, "Mailing_City": "Thiruvananthapuram"}])

    movable = deals[
        deals["Contact_Name_id"].isin(set(contact_ids))
        & deals.apply(lambda d: _next_stage(PIPELINES, d) is not None, axis=1)
    ].sort_values("id")
    deal = movable.iloc[0]
    next_stage = _next_stage(PIPELINES, deal)
    _admin(zoho_url, "Deals", [{"id": deal["id"], "Stage": next_stage}])

    _admin(
        zoho_url,
        "Cases",
        [
            {
                "Subject": "Payment debited but order not confirmed",
                "Status": "New",
                "Priority": "High",
                "Case_Origin": "Phone",
                "Related_To": {"id": case_contact},
            }
        ],
    )
    return [
        f"Contact {city_contact}: Mailing_City changed",
        f"Deal {deal['id']}: Stage {deal['Stage']} -> {next_stage}",
        f"Contact {case_contact}: new open High-priority Case",
    ]


def _next_stage(pipelines: dict[str, list[str]], deal) -> str | None:
    stages = pipelines.get(deal["Pipeline"], [])
    if deal["Stage"] not in stages:
        return None
    position = stages.index(deal["Stage"])
    return stages[position + 1] if position + 1 < len(stages) - 1 else None


def _admin(zoho_url: str, module: str, records: list[dict]) -> None:
    response = requests.post(f"{zoho_url}/__sandbox/records/{module}", json=records, timeout=30)
    response.raise_for_status()


def _run(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    job_name: str,
    sandbox: RunningSandbox,
    warehouse: WarehouseResource,
) -> StepReport:
    before = _clevertap_stats(sandbox)
    result = defs.resolve_job_def(job_name).execute_in_process(
        instance=instance, run_config=QUIET_LOGS, raise_on_error=False
    )
    after = _clevertap_stats(sandbox)
    lines = [f"run {result.run_id[:8]}: {'succeeded' if result.success else 'FAILED'}"]
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        metadata = materialization.metadata
        highlights = [
            f"{key} {value.value}"
            for key, value in metadata.items()
            if key in _HIGHLIGHTS and value.value not in (None, "")
        ]
        if highlights:
            lines.append(f"  {materialization.asset_key.to_user_string()}: {', '.join(highlights)}")
    for check in result.get_asset_check_evaluations():
        if not check.passed:
            lines.append(f"  check {check.check_name} FAILED")
    lines.append(
        f"  CleverTap received {after['requests'] - before['requests']} upload requests, "
        f"{after['records'] - before['records']} records"
    )
    return StepReport(job_name, lines)


_HIGHLIGHTS = {
    "records read",
    "records deleted",
    "contacts",
    "with identity",
    "review queue",
    "duplicate groups",
    "profiles",
    "transitions",
    "outbox rows queued",
    "changed",
    "accepted",
    "rejected by CleverTap",
    "rejected locally",
    "failed after retries",
    "pending events",
    "lookups",
}


def _clevertap_stats(sandbox: RunningSandbox) -> dict[str, int]:
    stats = requests.get(f"{sandbox.clevertap.url}/__sandbox/stats", timeout=30).json()
    return {
        "requests": int(stats["requests"].get("POST /1/upload", 0)),
        "records": int(stats["records"]["received"]),
    }


def _say(report: StepReport, say: Callable[[str], None]) -> None:
    say(f"== {report.title}")
    for line in report.lines:
        say(line)
