"""No customer's phone number or email, and no secret, in anything written for people to read.

The demo scenario runs as a user runs it (`ct-pipeline demo`, its own process and Dagster
instance), then the write-back flow handles webhook deliveries for people the demo pushed (one
good, one for nobody we know, one without the secret) in a run on the same instance. Failing
runs follow on that instance: CleverTap refusing records with errors that quote them, Zoho
serving Contacts whose Modified_Time cannot be read, and a `dagster job execute` run meeting a
CleverTap outage. The operator commands (`review-queue`, `rejections`) then read the demo
warehouse. The test reads the CLI's and the job process's output, every file of the Dagster
instance (event log, run storage, compute logs) as bytes, every run's event log through the
instance API, the failure events of the failed runs, the logs and output captured in this
process, and the receiver's answers, and looks for every phone number and email of the
synthetic CRM, in the forms a leak would take, and for every secret. Masked forms
(`+91******3210`, `a****@example.in`) are what should appear instead.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import requests
from dagster._core.instance.ref import InstanceRef
from dagster._serdes import serialize_value

from ct_pipeline.assets.writeback import WRITEBACK_ASSETS, WRITEBACK_CHECKS, WRITEBACK_JOBS
from ct_pipeline.config import SyncConfigResource
from ct_pipeline.sandbox import credentials
from ct_pipeline.sandbox.launch import start_sandbox
from ct_pipeline.sandbox.server import serving
from ct_pipeline.warehouse import WarehouseResource
from ct_pipeline.webhooks import WEBHOOK_PATH, create_webhook_app
from ct_pipeline_tests.pipeline.conftest import Pipeline
from ct_pipeline_tests.pipeline.test_crash_recovery import job_process
from ct_pipeline_tests.writeback.conftest import TOKEN, delivery

CONTACTS = 300
SEED = 7
DEMO_TIMEOUT_SECONDS = 300
# Someone CleverTap knows and the CRM does not: their webhook is parked, and must not leak either.
STRANGER = "+919000000001"
STRANGER_EMAIL = "not.in.the.crm@example.in"
ACCESS_TOKEN = re.compile(r"1000\.[0-9a-f]{32}\.[0-9a-f]{32}")
SECRETS = {
    "CleverTap passcode": credentials.SANDBOX_CLEVERTAP_PASSCODE,
    "Zoho client secret": credentials.SANDBOX_ZOHO_CLIENT_SECRET,
    "Zoho refresh token": credentials.SANDBOX_ZOHO_REFRESH_TOKEN,
    "webhook token": TOKEN,
}
# Runs the test makes fail: the unreadable Modified_Time, the outage (the refused upload is a
# success with rejections).
FAILED_RUNS = 2
FAILURE_EVENTS = {"STEP_FAILURE", "RUN_FAILURE", "ENGINE_EVENT", "RESOURCE_INIT_FAILURE"}
# The 0600 file where run processes share the Zoho access token: a secret store, not a log.
TOKEN_STORE_FOLDER = "zoho_tokens"


def test_no_phone_email_or_secret_reaches_logs_metadata_or_output(tmp_path, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    home = tmp_path / "dagster_home"
    workdir = tmp_path / "demo"
    workdir.mkdir()
    cli_output = run_demo_cli(workdir, home)
    warehouse = WarehouseResource(url=f"sqlite:///{workdir / '.ct_pipeline' / 'demo.sqlite'}")
    answers = run_writeback(warehouse, home)
    job_output = run_failing_syncs(warehouse, home, tmp_path)
    operator_output = run_operator_commands(warehouse)

    needles = personal_data(warehouse)
    # The detector works: the warehouse, which must hold the CRM's data, is full of it. (Values
    # are counted, never shown: an assertion message is test output too.)
    stored = "".join(
        path.read_bytes().decode("utf-8", "replace")
        for path in (workdir / ".ct_pipeline").glob("demo.sqlite*")
    ).lower()
    kinds_found = found_in(stored, needles)
    values_found = sum(value in stored for value in needles)
    assert len(kinds_found) >= 4
    assert values_found > 300
    failures = failure_texts(home)
    assert len(failures) >= FAILED_RUNS, f"failure events only in {sorted(failures)}"
    explained = "\n".join(failures.values())
    expected = ("with a Modified_Time that is not", "profiles were not delivered")
    assert all(text in explained for text in expected), "not the failures this test caused"
    event_logs = instance_event_logs(home)
    # Every run of the scenario, read through the API with its materialisations (and so their
    # metadata): the demo's two, the write-back, the refused upload and the two failed runs.
    assert sum("ASSET_MATERIALIZATION" in log for log in event_logs.values()) >= 6
    places = {
        "ct-pipeline demo output": cli_output,
        "webhook receiver answers": answers,
        "dagster job execute output": job_output,
        **operator_output,
        **failures,
        "logs captured in this process": caplog.text,
        "output captured in this process": "".join(capfd.readouterr()),
        **event_logs,
        **instance_files(home),
    }

    leaks = [(place, what) for place, text in places.items() for what in found_in(text, needles)]
    assert leaks == [], f"{len(leaks)} leaks, e.g. {leaks[:10]}"


def run_demo_cli(workdir: Path, home: Path) -> str:
    """`ct-pipeline demo` in its own process and instance; its whole output."""
    environment = {**os.environ, "DAGSTER_HOME": str(home)}
    command = [str(Path(sys.executable).parent / "ct-pipeline"), "demo"]
    done = subprocess.run(
        [*command, "--contacts", str(CONTACTS), "--seed", str(SEED)],
        cwd=workdir,
        env=environment,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_SECONDS,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    return output


def run_writeback(warehouse: WarehouseResource, home: Path) -> str:
    """Webhook deliveries through the receiver, then the crm_writeback job on the demo's
    instance; the receiver's answers, concatenated."""
    pushed = warehouse.read_table("clevertap_pushed_profiles").sort_values("identity")
    known = pushed.iloc[0]
    emails = warehouse.read_table("contact_identities")["email"].dropna()
    stranger = {"identity": STRANGER, "email": STRANGER_EMAIL}
    url_path = WEBHOOK_PATH
    answers = []
    with serving(create_webhook_app(warehouse, TOKEN)) as receiver:
        for body, token in (
            (delivery("Charged", {"identity": known["identity"], "objectId": "__g1"}), TOKEN),
            (delivery("App Uninstalled", stranger), TOKEN),
            (delivery("Charged", {"identity": known["identity"]}), None),
            ({"profiles": [{"identity": known["identity"], "email": emails.iloc[1]}]}, TOKEN),
        ):
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            response = requests.post(
                f"{receiver.url}{url_path}", json=body, headers=headers, timeout=30
            )
            answers.append(f"{response.status_code} {response.text}")

    sandbox = start_sandbox(contacts=CONTACTS, seed=SEED, clevertap_port=None)
    try:
        zoho = sandbox.zoho_resource()
        defs = dg.Definitions(
            assets=WRITEBACK_ASSETS,
            asset_checks=WRITEBACK_CHECKS,
            jobs=WRITEBACK_JOBS,
            resources={"zoho": zoho, "warehouse": warehouse, "sync_config": SyncConfigResource()},
        )
        os.environ["DAGSTER_HOME"] = str(home)
        try:
            with dg.DagsterInstance.get() as instance:
                result = defs.resolve_job_def("crm_writeback").execute_in_process(
                    instance=instance, raise_on_error=False
                )
        finally:
            del os.environ["DAGSTER_HOME"]
    finally:
        sandbox.stop()
    assert result.success
    inbox = warehouse.read_table("clevertap_webhook_inbox")
    assert sorted(inbox["status"]) == ["applied", "parked"]
    return "\n".join(answers)


def run_failing_syncs(warehouse: WarehouseResource, home: Path, tmp_path: Path) -> str:
    """Sync runs on the demo's instance that go wrong over customers' records (one with refused
    profiles, two that fail); the output of the one run as `dagster job execute`."""
    sandbox = start_sandbox(contacts=CONTACTS, seed=SEED)
    try:
        with instance_at(home) as instance:
            # CleverTap refuses three people the demo pushed, its errors quoting them.
            demo = Pipeline(sandbox=sandbox, warehouse=warehouse, instance=instance)
            refused = warehouse.read_table("profile_attributes").sort_values("identity").head(3)
            demo.clevertap(
                "POST", "faults", {"reject": [_quoting(row) for row in refused.to_dict("records")]}
            )
            demo.zoho(
                "POST",
                "records/Contacts",
                [
                    {"id": contact, "Mailing_City": "Itanagar"}
                    for contact in refused["crm_contact_id"]
                ],
            )
            demo.run("incremental_sync")
            assert len(warehouse.read_table("clevertap_rejections")) >= 3, "nothing was refused"

            # Zoho serves Contacts whose Modified_Time cannot be read, next to their phones.
            fresh = WarehouseResource(url=f"sqlite:///{tmp_path / 'failing.sqlite'}")
            unreadable = Pipeline(sandbox=sandbox, warehouse=fresh, instance=instance)
            contacts = refused["crm_contact_id"].tolist()
            unreadable.zoho(
                "POST",
                "faults",
                {"serve_values": {c: {"Modified_Time": "soon"} for c in contacts}},
            )
            broken_read = unreadable.run("nightly_full_sync")
            unreadable.zoho("POST", "reset")
        assert not broken_read.success

        # CleverTap down for a whole run of `dagster job execute`.
        unreadable.clevertap("POST", "faults", {"clear": True, "outage": True})
        process = job_process(unreadable, "nightly_full_sync", tmp_path)
        output = process.communicate(timeout=DEMO_TIMEOUT_SECONDS)[0].decode(errors="replace")
        assert process.returncode != 0, "the run in a CleverTap outage succeeded"
    finally:
        sandbox.stop()
    return output


def _quoting(profile: dict) -> dict:
    """A CleverTap reject rule whose error text quotes the person's phone and email."""
    quoted = f"Invalid value for {profile['identity']} ({profile.get('Email') or 'no email'})"
    return {"identity": profile["identity"], "code": 512, "error": quoted}


def run_operator_commands(warehouse: WarehouseResource) -> dict[str, str]:
    """The output of the operator commands on the demo warehouse, every row printed."""
    outputs = {}
    for command in (["review-queue"], ["rejections"]):
        done = subprocess.run(
            [str(Path(sys.executable).parent / "ct-pipeline"), *command, "--limit", "100000"]
            + ["--warehouse", warehouse.resolved_url],
            capture_output=True,
            text=True,
            timeout=DEMO_TIMEOUT_SECONDS,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert "masked" in done.stdout, done.stdout[:500]
        outputs[f"ct-pipeline {command[0]} output"] = done.stdout + done.stderr
    return outputs


@contextmanager
def instance_at(home: Path) -> Iterator[dg.DagsterInstance]:
    """The Dagster instance whose folder is `home` (the demo's)."""
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        yield instance


def instance_event_logs(home: Path) -> dict[str, str]:
    """Every run's event log as the instance API returns it, serialised, with the run's record
    (config, tags)."""
    logs = {}
    with instance_at(home) as instance:
        for record in instance.get_run_records():
            run = record.dagster_run
            entries = [serialize_value(entry) for entry in instance.all_logs(run.run_id)]
            logs[f"event log of {run.job_name} {run.run_id[:8]} (instance API)"] = "\n".join(
                [serialize_value(run), *entries]
            )
    return logs


def failure_texts(home: Path) -> dict[str, str]:
    """The failure events of every failed run: each error, its causes and their stacks."""
    texts = {}
    with instance_at(home) as instance:
        failed = instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
        for record in failed:
            run = record.dagster_run
            errors = [
                entry.dagster_event.event_specific_data.error.to_string()
                for entry in instance.all_logs(run.run_id)
                if entry.dagster_event is not None
                and entry.dagster_event.event_type_value in FAILURE_EVENTS
                and getattr(entry.dagster_event.event_specific_data, "error", None) is not None
            ]
            if errors:
                texts[f"failure events of {run.job_name} {run.run_id[:8]}"] = "\n".join(errors)
    return texts


def personal_data(warehouse: WarehouseResource) -> dict[str, str]:
    """Every phone number and email of the synthetic CRM, in the forms a leak would take, each
    with a label that does not repeat it."""
    needles = {STRANGER: "unknown webhook phone", STRANGER_EMAIL: "unknown webhook email"}
    identities = warehouse.read_table("contact_identities")
    for column in ("mobile_e164", "phone_e164", "email", "secondary_email"):
        for value in identities[column].dropna().astype(str):
            needles[value.lower()] = f"{column} of the CRM"
            if value.startswith("+91") and len(value) == 13:
                needles[value[3:]] = f"{column} without +91"
    for table in ("zoho_contacts", "zoho_leads"):
        records = warehouse.read_table(table)
        for column in ("Email", "Secondary_Email", "Phone", "Mobile"):
            if column not in records:
                continue
            for value in records[column].dropna().astype(str).str.strip():
                if len(value) >= 8 and sum(c.isdigit() for c in value) >= 8 or "@" in value:
                    needles[value.lower()] = f"{table}.{column} as typed"
    return needles


def instance_files(home: Path) -> dict[str, str]:
    """The text of every file of the Dagster instance but the token store."""
    files = {}
    for path in sorted(home.rglob("*")):
        if path.is_file() and TOKEN_STORE_FOLDER not in path.relative_to(home).parts:
            files[f"instance file {path.relative_to(home)}"] = path.read_bytes().decode(
                "utf-8", errors="replace"
            )
    assert any(name.endswith(".db") for name in files), "no instance storage was written"
    return files


def found_in(text: str, needles: dict[str, str]) -> list[str]:
    """Labels of the personal data and secrets `text` contains (never the values themselves)."""
    lowered = text.lower()
    found = sorted({label for value, label in needles.items() if value in lowered})
    found += [name for name, secret in SECRETS.items() if secret in text]
    if ACCESS_TOKEN.search(text):
        found.append("a Zoho access token")
    return found
