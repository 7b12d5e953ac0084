"""No customer's phone number or email, and no secret, in anything written for people to read.

The demo scenario runs as a user runs it (`ct-pipeline demo`, its own process and Dagster
instance), then the write-back flow handles webhook deliveries for people the demo pushed (one
good, one for nobody we know, one without the secret) in a run on the same instance. The test
then reads the CLI's output, every file of the Dagster instance (event log, run storage, compute
logs), the logs and output captured in this process, and the receiver's answers, and looks for
every phone number and email of the synthetic CRM, in the forms a leak would take, and for every
secret. Masked forms (`+91******3210`, `a****@example.in`) are what should appear instead.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import requests

from ct_pipeline.assets.writeback import WRITEBACK_ASSETS, WRITEBACK_CHECKS, WRITEBACK_JOBS
from ct_pipeline.config import SyncConfigResource
from ct_pipeline.sandbox import credentials
from ct_pipeline.sandbox.launch import start_sandbox
from ct_pipeline.sandbox.server import serving
from ct_pipeline.warehouse import WarehouseResource
from ct_pipeline.webhooks import WEBHOOK_PATH, create_webhook_app
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
    places = {
        "ct-pipeline demo output": cli_output,
        "webhook receiver answers": answers,
        "logs captured in this process": caplog.text,
        "output captured in this process": "".join(capfd.readouterr()),
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
