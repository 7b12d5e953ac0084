"""The `ct-pipeline` command: the sandbox, configuration checks and the operator's shortcuts."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

import click

from ct_pipeline.config import SyncConfigError, load_sync_config

DEFAULT_SANDBOX_CONTACTS = 2_000


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Keep CleverTap in step with Zoho CRM: run the sandbox, check configuration, operate."""


@main.command()
@click.option("--zoho-port", type=int, default=None, help="Serve the Zoho CRM emulator here.")
@click.option("--clevertap-port", type=int, default=None, help="Serve the CleverTap emulator here.")
@click.option(
    "--contacts",
    type=click.IntRange(min=0),
    default=DEFAULT_SANDBOX_CONTACTS,
    show_default=True,
    help="Synthetic Contacts to seed (with their Leads, Deals and Cases).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the data.")
def sandbox(zoho_port: int | None, clevertap_port: int | None, contacts: int, seed: int) -> None:
    """Serve local emulators of the Zoho CRM and CleverTap APIs on 127.0.0.1 until stopped.

    With neither port given, both emulators start on free ports. The command prints the
    environment variables that point the pipeline at them.
    """
    from ct_pipeline.sandbox.launch import start_sandbox

    if zoho_port is None and clevertap_port is None:
        zoho_port = clevertap_port = 0
    click.echo(f"Generating {contacts:,} synthetic contacts (seed {seed})...", err=True)
    running = start_sandbox(
        zoho_port=zoho_port, clevertap_port=clevertap_port, contacts=contacts, seed=seed
    )
    for name, value in running.environment().items():
        click.echo(f"export {name}={value}")
    click.echo("Sandbox running; press Ctrl+C to stop.", err=True)
    _wait_for_interrupt()
    running.stop()


@main.command()
@click.option(
    "--contacts",
    type=click.IntRange(min=100),
    default=3_000,
    show_default=True,
    help="Synthetic Contacts to seed the sandbox with.",
)
@click.option("--seed", type=int, default=7, show_default=True, help="Seed for the data.")
def demo(contacts: int, seed: int) -> None:
    """Run the sync end to end against the sandbox and report what happened at each step.

    Starts both emulators, runs nightly_full_sync, edits a few CRM records (a city, a deal
    stage, a new high-priority Case), runs incremental_sync, and prints counts. The runs are
    kept in the local Dagster instance (.dagster_home), so `make dev` shows them.
    """
    from ct_pipeline.demo import run_demo

    run_demo(contacts=contacts, seed=seed, say=click.echo)


@main.command()
@click.option("--port", type=int, default=3000, show_default=True, help="Port of the Dagster UI.")
@click.option(
    "--contacts",
    type=click.IntRange(min=0),
    default=3_000,
    show_default=True,
    help="Synthetic Contacts to seed the sandbox with.",
)
@click.option("--seed", type=int, default=7, show_default=True, help="Seed for the data.")
def dev(port: int, contacts: int, seed: int) -> None:
    """Start the Dagster UI and daemon against the sandbox (stop with Ctrl+C)."""
    import subprocess

    from ct_pipeline.demo import ensure_local_instance
    from ct_pipeline.sandbox.launch import start_sandbox

    ensure_local_instance()
    running = start_sandbox(contacts=contacts, seed=seed)
    environment = {**os.environ, **running.environment()}
    click.echo(f"Sandbox up; Dagster UI on http://127.0.0.1:{port}", err=True)
    command = [
        str(Path(sys.executable).parent / "dagster"),
        "dev",
        "-w",
        "workspace.yaml",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    try:
        subprocess.run(command, env=environment, check=False)
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()


@main.command("webhook-server")
@click.option("--port", type=int, default=8787, show_default=True, help="Port to listen on.")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to bind. Keep 127.0.0.1 behind a TLS reverse proxy; 0.0.0.0 exposes it.",
)
def webhook_server(port: int, host: str) -> None:
    """Receive CleverTap webhooks on POST /webhooks/clevertap and store them for write-back.

    CleverTap must send CT_WEBHOOK_TOKEN as the Basic authentication password (or a bearer
    token). Deliveries go to the warehouse ($CT_WAREHOUSE_URL); the crm_writeback job applies
    them to Zoho.
    """
    from ct_pipeline.webhooks import WebhookConfigError, serve_webhooks

    try:
        serve_webhooks(port=port, host=host)
    except (WebhookConfigError, SyncConfigError) as error:
        raise click.ClickException(str(error)) from None


@main.group()
def config() -> None:
    """Inspect the sync configuration."""


@config.command("check")
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
def config_check(path: Path | None) -> None:
    """Validate the sync configuration (PATH, else $CT_SYNC_CONFIG, else the packaged example)."""
    try:
        sync_config = load_sync_config(path)
    except SyncConfigError as error:
        raise click.ClickException(str(error)) from None
    source = path or os.environ.get("CT_SYNC_CONFIG") or "the packaged example"
    click.echo(
        f"{source}: valid. Identity order {'/'.join(sync_config.identity.order)}, "
        f"{len(sync_config.profile.mappings)} profile mappings, "
        f"modules {', '.join(sync_config.zoho.modules)}, "
        f"batch size {sync_config.clevertap.batch_size}."
    )


def _wait_for_interrupt() -> None:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass


if __name__ == "__main__":
    sys.exit(main())
