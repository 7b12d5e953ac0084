"""The `ct-pipeline` command: the sandbox, the demo, configuration checks and operators' tables."""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import pandas as pd

from ct_pipeline.config import SyncConfigError, load_sync_config

DEFAULT_SANDBOX_CONTACTS = 2_000
DEFAULT_DEMO_CONTACTS = 3_000
DEFAULT_LIMIT = 20
# Piped output (a log file, a test) is this wide, so 19-digit Zoho ids are never wrapped.
PIPED_WIDTH = 140

REVIEW_QUEUE = "identity_review_queue"
IDENTITIES = "contact_identities"
REJECTIONS = "clevertap_rejections"
OUTBOX_STATUSES = ["held", "sending", "pending", "sent", "rejected"]
HELD_KINDS = ["event", "campaign", "profile"]
_AT_SIGN_WORD = re.compile(r"[^\s@*]+@[^\s@]+")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def main() -> None:
    """Keep CleverTap in step with Zoho CRM: try it on local emulators, check a configuration,
    and read the tables an operator needs.

    Every command reads its settings from environment variables (never printed); each
    command's --help names the ones it uses. The sync itself runs as Dagster jobs: see
    README.md.
    """


def synthetic_data_options(default_contacts: int, min_contacts: int = 0, default_seed: int = 7):
    """The --contacts and --seed options of the commands that generate a sandbox CRM."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        command = click.option(
            "--seed",
            type=int,
            default=default_seed,
            show_default=True,
            help="Seed of the synthetic data: the same seed gives the same CRM.",
        )(command)
        return click.option(
            "--contacts",
            type=click.IntRange(min=min_contacts),
            default=default_contacts,
            show_default=True,
            help="Synthetic Contacts to generate, with their Leads, Deals and Cases.",
        )(command)

    return decorate


def warehouse_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """The --warehouse option: a SQLAlchemy URL, by default $CT_WAREHOUSE_URL."""
    return click.option(
        "--warehouse",
        "warehouse_url",
        envvar="CT_WAREHOUSE_URL",
        show_envvar=True,
        default=None,
        help="SQLAlchemy URL of the warehouse [default: .ct_pipeline/warehouse.sqlite].",
    )(command)


def limit_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """The --limit option of the table commands."""
    return click.option(
        "--limit",
        type=click.IntRange(min=1),
        default=DEFAULT_LIMIT,
        show_default=True,
        help="Rows to print (the counts above the rows cover every match).",
    )(command)


@main.command()
@click.option("--zoho-port", type=int, default=None, help="Serve the Zoho CRM emulator here.")
@click.option("--clevertap-port", type=int, default=None, help="Serve the CleverTap emulator here.")
@synthetic_data_options(DEFAULT_SANDBOX_CONTACTS, default_seed=0)
def sandbox(zoho_port: int | None, clevertap_port: int | None, contacts: int, seed: int) -> None:
    """Serve local emulators of the Zoho CRM and CleverTap APIs on 127.0.0.1 until stopped.

    With neither port given, both emulators start on free ports. The command prints the
    `export` lines (ZOHO_*, CLEVERTAP_*) that point the pipeline at them. It reads no
    environment variable.
    """
    from ct_pipeline.sandbox.launch import start_sandbox

    if zoho_port is None and clevertap_port is None:
        zoho_port = clevertap_port = 0
    with _progress(f"Generating {contacts:,} synthetic contacts (seed {seed})") as step:
        step("generating the synthetic CRM and starting the emulators")
        running = start_sandbox(
            zoho_port=zoho_port, clevertap_port=clevertap_port, contacts=contacts, seed=seed
        )
    for name, value in running.environment().items():
        click.echo(f"export {name}={value}")
    sys.stdout.flush()
    click.echo("Sandbox running; press Ctrl+C to stop.", err=True)
    _wait_for_interrupt()
    running.stop()


@main.command()
@synthetic_data_options(DEFAULT_DEMO_CONTACTS, min_contacts=100)
def demo(contacts: int, seed: int) -> None:
    """Run the sync end to end against the sandbox and report what happened at each step.

    Starts both emulators, runs nightly_full_sync, edits a few CRM records (a city, a deal
    stage, a new high-priority Case), runs incremental_sync, and prints counts (never personal
    data). The runs are kept in the Dagster instance in $DAGSTER_HOME (default .dagster_home),
    so `make dev` shows them; the warehouse is .ct_pipeline/demo.sqlite. It ignores ZOHO_*,
    CLEVERTAP_* and CT_WAREHOUSE_URL: the demo never talks to real accounts.
    """
    from ct_pipeline.demo import DEMO_STEPS, run_demo

    with _progress("Demo", total=len(DEMO_STEPS)) as step:
        run_demo(contacts=contacts, seed=seed, say=click.echo, on_step=step)


@main.command()
@click.option("--port", type=int, default=3000, show_default=True, help="Port of the Dagster UI.")
@synthetic_data_options(DEFAULT_DEMO_CONTACTS)
def dev(port: int, contacts: int, seed: int) -> None:
    """Start the Dagster UI and daemon (`dagster dev`) against a fresh sandbox; stop with Ctrl+C.

    Uses the Dagster instance in $DAGSTER_HOME (default .dagster_home, where `make demo` keeps
    its runs) and the warehouse in $CT_WAREHOUSE_URL (default .ct_pipeline/warehouse.sqlite).
    The sandbox's ZOHO_* and CLEVERTAP_* variables replace any set in the environment.
    """
    import subprocess

    from ct_pipeline.demo import ensure_local_instance
    from ct_pipeline.sandbox.launch import start_sandbox

    ensure_local_instance()
    with _progress(f"Generating {contacts:,} synthetic contacts (seed {seed})") as step:
        step("generating the synthetic CRM and starting the emulators")
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
    them to Zoho. Also reads CT_SYNC_CONFIG (writeback settings).
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
    """Validate the sync configuration: PATH, else $CT_SYNC_CONFIG, else the packaged example.

    Prints a one-line summary, or the bad keys and exit status 1.
    """
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


@main.command("review-queue")
@warehouse_option
@click.option(
    "--module", type=click.Choice(["Contacts", "Leads"]), default=None, help="Only this module."
)
@click.option(
    "--reason",
    default=None,
    help="Only this reason, e.g. no_phone_or_email, identity_collision.",
)
@limit_option
def review_queue(
    warehouse_url: str | None, module: str | None, reason: str | None, limit: int
) -> None:
    """Print the identity review queue: CRM records held back from CleverTap, and why.

    Counts by module and reason, then the records with their phone and email masked. Reads
    CT_WAREHOUSE_URL (or --warehouse).
    """
    warehouse = _open_warehouse(warehouse_url, REVIEW_QUEUE)
    queue = warehouse.read_table(REVIEW_QUEUE)
    known_reasons = sorted(queue["reason"].dropna().unique())
    if module:
        queue = queue[queue["module"] == module]
    if reason:
        queue = queue[queue["reason"] == reason]
    if queue.empty:
        click.echo(
            f"No records held for review{_filters(module=module, reason=reason)}. "
            f"Reasons in the queue: {', '.join(known_reasons) or 'none'}."
        )
        return

    _print_counts(queue, ["module", "reason"], "records held for review")
    shown = queue.sort_values(["module", "reason", "zoho_id"]).head(limit)
    contacts = _masked_contact_details(warehouse, shown)
    _print_table(
        shown.merge(contacts, on=["module", "zoho_id"], how="left"),
        ["zoho_id", "module", "reason", "mobile", "email"],
        f"{len(shown)} of {len(queue)} records (phone and email masked)",
    )


@main.command()
@warehouse_option
@click.option(
    "--kind", type=click.Choice(["profile", "event"]), default=None, help="Only this kind."
)
@click.option("--code", type=int, default=None, help="Only this CleverTap error code, e.g. 515.")
@limit_option
def rejections(warehouse_url: str | None, kind: str | None, code: int | None, limit: int) -> None:
    """Print the records CleverTap (or the local checks) refused, newest first.

    Each row has its Zoho id, CleverTap's code and error (phone numbers and emails masked); a
    record accepted later leaves the table. Reads CT_WAREHOUSE_URL (or --warehouse).
    """
    warehouse = _open_warehouse(warehouse_url, None)
    if not warehouse.table_exists(REJECTIONS):
        click.echo(
            "No rejections recorded: CleverTap has accepted every record sent so far "
            f"({REJECTIONS} appears with the first rejection)."
        )
        return
    rows = warehouse.read_table(REJECTIONS)
    if kind:
        rows = rows[rows["kind"] == kind]
    if code is not None:
        rows = rows[pd.to_numeric(rows["code"], errors="coerce") == code]
    if rows.empty:
        click.echo(f"No rejections{_filters(kind=kind, code=code)}.")
        return

    _print_counts(rows, ["kind", "code"], "rejected records")
    shown = rows.sort_values("rejected_at", ascending=False).head(limit)
    _print_table(
        masked_rejections(shown),
        ["rejected_at", "kind", "zoho_id", "record", "outcome", "code", "error"],
        f"{len(shown)} of {len(rows)} rejections (identities masked)",
    )


@main.command("requeue-parked")
@warehouse_option
@click.option(
    "--reason",
    default=None,
    help="Only events parked for this reason, e.g. no_matching_contact.",
)
def requeue_parked(warehouse_url: str | None, reason: str | None) -> None:
    """Send parked webhook events back to be matched and written to Zoho again.

    Use it once the cause is fixed: the missing Contact exists, the Zoho field was added, the
    event was added to writeback.events. Prints the parked events by reason, then how many
    were requeued; the next crm_writeback run takes them. Reads CT_WAREHOUSE_URL (or
    --warehouse).
    """
    from ct_pipeline.webhooks import requeue_parked as requeue
    from ct_pipeline.webhooks.inbox import parked_by_reason

    warehouse = _open_warehouse(warehouse_url, None)
    parked = parked_by_reason(warehouse)
    if not parked:
        click.echo("No webhook events are parked: nothing to requeue.")
        return
    click.echo(
        "Parked webhook events: "
        + ", ".join(f"{name} {count:,}" for name, count in parked.items())
        + "."
    )
    if reason is not None and reason not in parked:
        click.echo(f"None is parked for {reason}: nothing requeued.")
        return

    requeued = requeue(warehouse, reason)
    click.echo(
        f"Requeued {requeued:,} events{_filters(reason=reason)}. The next crm_writeback run "
        "matches them again (webhook_inbox_sensor starts one within five minutes)."
    )


@main.group()
def outbox() -> None:
    """List and release what the sync holds back from CleverTap for review.

    Outbox events and campaign triggers are held when their Contact has no pushed identity, or
    when their outcome was unknown (sent by a run that died before CleverTap's answer was
    recorded) under clevertap.unknown_outcome_policy: hold; profile uploads with an unknown
    outcome are held the same way. Each subcommand reads CT_WAREHOUSE_URL (or --warehouse).
    """


@outbox.command("list")
@warehouse_option
@click.option(
    "--status",
    type=click.Choice(OUTBOX_STATUSES),
    default="held",
    show_default=True,
    help="Rows in this status (sending: an unknown outcome the next run will resolve).",
)
@click.option("--kind", type=click.Choice(HELD_KINDS), default=None, help="Only this kind.")
@click.option("--reason", default=None, help="Only this reason, e.g. unknown_outcome.")
@limit_option
def outbox_list(
    warehouse_url: str | None, status: str, kind: str | None, reason: str | None, limit: int
) -> None:
    """Print held (or other) outbox rows and profile uploads, identities masked.

    Counts by kind and reason, then the rows: `key` is what `ct-pipeline outbox release` takes
    (an outbox event id, or a held profile's Zoho Contact id). Reads CT_WAREHOUSE_URL (or
    --warehouse).
    """
    rows = _outbox_rows(_open_warehouse(warehouse_url, None), status, kind, reason)
    if rows.empty:
        click.echo(f"No {status} rows{_filters(kind=kind, reason=reason)}.")
        return
    _print_counts(rows, ["kind", "reason"], f"{status} rows")
    shown = rows.sort_values(["kind", "updated_at", "key"]).head(limit)
    _print_table(
        shown.assign(identity=shown["identity"].map(_masked)),
        ["key", "kind", "zoho_id", "identity", "reason", "attempts", "updated_at"],
        f"{len(shown)} of {len(rows)} rows (identities masked; zoho_id: the Deal, or the Contact)",
        wrapped=("identity", "reason"),
    )


@outbox.command("release")
@warehouse_option
@click.argument("keys", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Every held row the filters match.")
@click.option("--kind", type=click.Choice(HELD_KINDS), default=None, help="Only this kind.")
@click.option("--reason", default=None, help="Only this reason, e.g. unknown_outcome.")
@click.option(
    "--as-sent",
    is_flag=True,
    help="Take them as delivered without sending (you checked CleverTap has them).",
)
def outbox_release(
    warehouse_url: str | None,
    keys: tuple[str, ...],
    every: bool,
    kind: str | None,
    reason: str | None,
    as_sent: bool,
) -> None:
    """Release held rows: the next sync sends them (or, with --as-sent, never does).

    KEYS are the keys `ct-pipeline outbox list` prints; --all releases every held row the
    filters match. An event whose Contact still has no pushed identity stays held. Reads
    CT_WAREHOUSE_URL (or --warehouse).
    """
    from ct_pipeline.assets.clevertap import push_identity_by_contact
    from ct_pipeline.warehouse.state import release_outbox, release_profiles, settle_profile_holds

    if not keys and not every:
        raise click.UsageError("name the KEYS to release (see `ct-pipeline outbox list`), or --all")
    warehouse = _open_warehouse(warehouse_url, None)
    held = _outbox_rows(warehouse, "held", kind, reason)
    if keys:
        unknown = sorted(set(keys) - set(held["key"]))
        if unknown:
            raise click.ClickException(
                f"not held{_filters(kind=kind, reason=reason)}: {', '.join(unknown)}; "
                "see `ct-pipeline outbox list`"
            )
        held = held[held["key"].isin(keys)]

    profiles = held[held["kind"] == "profile"]
    events = held[held["kind"] != "profile"]
    if not as_sent:
        # Sent under the identity the Contact's profile is pushed under now, if it has one.
        current = push_identity_by_contact(warehouse, events["contact_id"].dropna())
        now = events["contact_id"].map(current).astype("str")
        events = events.assign(identity=events["identity"].astype("str").fillna(now))
    addressed = events if as_sent else events[events["identity"].notna()]
    with warehouse.transaction() as tx:
        released = release_outbox(
            tx, addressed.rename(columns={"key": "event_id"}), as_sent=as_sent
        )
        if as_sent:
            settle_profile_holds(tx, profiles)
        else:
            release_profiles(tx, profiles["identity"])

    outcome = "taken as delivered" if as_sent else "released; the next sync sends them"
    click.echo(f"{released} outbox rows and {len(profiles)} profile uploads {outcome}.")
    if len(addressed) < len(events):
        click.echo(
            f"{len(events) - len(addressed)} outbox rows stay held: their Contact still has no "
            "pushed identity (see `ct-pipeline review-queue`)."
        )


def _outbox_rows(warehouse, status: str, kind: str | None, reason: str | None) -> pd.DataFrame:
    """Outbox rows and profile holds in `status`, in one shape: key, kind, zoho_id, contact_id,
    identity, reason, attempts, updated_at."""
    from ct_pipeline.warehouse.state import profile_holds, read_outbox

    events = read_outbox(warehouse, [status])
    holds = profile_holds(warehouse)
    holds = holds[holds["status"] == status]
    rows = pd.concat(
        [
            pd.DataFrame(
                {
                    "key": events["event_id"],
                    "kind": events["kind"],
                    "zoho_id": events["deal_id"],
                    "contact_id": events["contact_id"],
                    "identity": events["identity"],
                    "reason": events["reason"],
                    "attempts": events["attempts"].astype("Int64"),
                    "updated_at": events["updated_at"].astype("str").str.slice(0, 16),
                    "payload_hash": None,
                }
            ),
            pd.DataFrame(
                {
                    "key": holds["contact_id"],
                    "kind": "profile",
                    "zoho_id": holds["contact_id"],
                    "contact_id": holds["contact_id"],
                    "identity": holds["identity"],
                    "reason": holds["reason"],
                    "attempts": pd.array([pd.NA] * len(holds), dtype="Int64"),
                    "updated_at": holds["held_at"].astype("str").str.slice(0, 16),
                    "payload_hash": holds["payload_hash"],
                }
            ),
        ],
        ignore_index=True,
    )
    if kind:
        rows = rows[rows["kind"] == kind]
    if reason:
        rows = rows[rows["reason"] == reason]
    return rows.reset_index(drop=True)


def masked_rejections(rows: pd.DataFrame) -> pd.DataFrame:
    """Rejection rows for display: profile keys (identities) masked, errors redacted."""
    from ct_pipeline.sensors import redact

    record = [
        _masked(key) if kind == "profile" else str(key)
        for kind, key in zip(rows["kind"], rows["record_key"], strict=True)
    ]
    return rows.assign(
        record=record,
        error=rows["error"].map(
            lambda error: _scrub(redact(str(error))) if _present(error) else ""
        ),
        code=rows["code"].map(lambda code: str(int(code)) if _present(code) else ""),
        rejected_at=rows["rejected_at"].astype("str").str.slice(0, 19),
    )


def _open_warehouse(url: str | None, required_table: str | None):
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from ct_pipeline.warehouse import WarehouseResource

    warehouse = WarehouseResource(url=url or None)
    shown = warehouse.resolved_url
    try:
        parsed = make_url(shown)
        shown = parsed.render_as_string(hide_password=True)
        # Opening a missing SQLite file would create an empty one: say it is not there instead.
        sqlite_file = parsed.database if parsed.get_backend_name() == "sqlite" else None
        if sqlite_file and not Path(sqlite_file).exists():
            raise click.ClickException(
                f"the warehouse file {sqlite_file} does not exist: run a sync first "
                "(make demo), or check CT_WAREHOUSE_URL or --warehouse"
            )
        present = warehouse.table_exists(required_table or REJECTIONS)
    except (ArgumentError, SQLAlchemyError, ImportError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise click.ClickException(
            f"cannot open the warehouse {shown}: {reason}; check CT_WAREHOUSE_URL or --warehouse"
        ) from None
    if required_table and not present:
        raise click.ClickException(
            f"the warehouse {shown} has no table {required_table} yet: run a sync first "
            "(make demo, or the nightly_full_sync job), or point --warehouse at the right one"
        )
    return warehouse


def _masked_contact_details(warehouse, records: pd.DataFrame) -> pd.DataFrame:
    columns = ["module", "zoho_id", "mobile", "email"]
    if not warehouse.table_exists(IDENTITIES):
        return pd.DataFrame(columns=columns)
    identities = warehouse.read_table(
        IDENTITIES, columns=["module", "zoho_id", "mobile_e164", "phone_e164", "email"]
    )
    wanted = identities.merge(records[["module", "zoho_id"]], on=["module", "zoho_id"])
    phone = wanted["mobile_e164"].where(wanted["mobile_e164"].notna(), wanted["phone_e164"])
    return pd.DataFrame(
        {
            "module": wanted["module"],
            "zoho_id": wanted["zoho_id"],
            "mobile": phone.map(_masked),
            "email": wanted["email"].map(_masked),
        }
    )


def _scrub(text: str) -> str:
    """Mask anything with an @ that `redact` left, such as an invalid email CleverTap echoes."""
    return _AT_SIGN_WORD.sub(lambda match: _masked(match.group()), text)


def _masked(value: Any) -> str:
    from ct_pipeline.assets.common import mask_identity

    return mask_identity(str(value)) if _present(value) else ""


def _print_counts(rows: pd.DataFrame, by: list[str], what: str) -> None:
    counts = (
        rows.assign(**{column: rows[column].astype("str") for column in by})
        .groupby(by)
        .size()
        .reset_index(name="count")
        .sort_values("count", ascending=False)
    )
    _print_table(counts, [*by, "count"], f"{len(rows)} {what}")


def _print_table(
    rows: pd.DataFrame, columns: list[str], title: str, wrapped: tuple[str, ...] = ("error",)
) -> None:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, no_wrap=column not in wrapped, overflow="fold")
    for values in rows[columns].itertuples(index=False):
        table.add_row(*("" if not _present(value) else str(value) for value in values))
    _console().print(table)


def _console():
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else PIPED_WIDTH, soft_wrap=False)


@contextmanager
def _progress(title: str, total: int | None = None) -> Iterator[Callable[[str], None]]:
    """A progress display on stderr; the yielded function names the step now starting."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = [SpinnerColumn(), TextColumn("{task.description}")]
    if total:
        columns += [BarColumn(), MofNCompleteColumn()]
    columns.append(TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        task = progress.add_task(title, total=total)
        started = 0

        def step(name: str) -> None:
            nonlocal started
            if total and started:
                progress.advance(task)
            started += 1
            progress.update(task, description=f"{title}: {name}")

        yield step
        progress.update(task, description=f"{title}: done", completed=total or 1, total=total or 1)


def _filters(**values: Any) -> str:
    given = [f"{name} {value}" for name, value in values.items() if value is not None]
    return f" with {', '.join(given)}" if given else ""


def _present(value: Any) -> bool:
    return value is not None and value is not pd.NA and value == value and value != ""


def _wait_for_interrupt() -> None:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass


if __name__ == "__main__":
    sys.exit(main())
