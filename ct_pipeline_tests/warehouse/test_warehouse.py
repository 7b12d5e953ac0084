"""The warehouse resource behaves the same on SQLite and on PostgreSQL."""

from __future__ import annotations

import tempfile
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from ct_pipeline.warehouse import WarehouseResource
from ct_pipeline.warehouse.resource import (
    WarehouseDataError,
    WarehouseTransaction,
    WarehouseUrlError,
    dispose_engine,
)
from ct_pipeline_tests.conftest import postgres_schema

PHONE = "+919876543210"
EMAIL = "asha.rao@example.in"


def contacts_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ["1001", "1002", "1003"],
            "city": ["Pune", None, "Kochi"],
            "value_inr": [1200.5, None, 0.0],
            "deals": pd.array([2, None, 0], dtype="Int64"),
            "vip": pd.array([True, False, None], dtype="boolean"),
            "modified_time": pd.to_datetime(
                ["2026-01-02T10:00:00+05:30", "2026-01-03T00:00:00Z", None], utc=True
            ),
        }
    )


def test_replace_table_round_trips_types_and_missing_values(warehouse: WarehouseResource):
    written = warehouse.replace_table("contacts", contacts_frame(), key=["id"])

    read = warehouse.read_table("contacts").sort_values("id").reset_index(drop=True)
    assert written == 3
    pd.testing.assert_frame_equal(read, contacts_frame(), check_dtype=False)
    assert str(read["modified_time"].dt.tz) == "UTC"
    assert read["city"].isna().tolist() == [False, True, False]
    assert read["vip"].isna().tolist() == [False, False, True]


def test_replace_table_drops_the_old_schema(warehouse: WarehouseResource):
    warehouse.replace_table("contacts", contacts_frame())
    warehouse.replace_table("contacts", pd.DataFrame({"id": ["9"]}))

    assert warehouse.read_table("contacts").to_dict("list") == {"id": ["9"]}


def test_upsert_inserts_new_keys_and_updates_existing_ones(warehouse: WarehouseResource):
    warehouse.upsert("contacts", contacts_frame(), key=["id"])
    change = pd.DataFrame({"id": ["1002", "1004"], "city": ["Jaipur", "Surat"]})

    warehouse.upsert("contacts", change, key=["id"])

    read = warehouse.read_table("contacts").set_index("id")
    assert read.loc["1002", "city"] == "Jaipur"
    assert read.loc["1004", "city"] == "Surat"
    assert read.loc["1001", "city"] == "Pune"
    # Columns absent from the change keep their values.
    assert read.loc["1001", "value_inr"] == 1200.5
    assert len(read) == 4


def test_upsert_adds_columns_the_table_lacks(warehouse: WarehouseResource):
    warehouse.upsert("contacts", pd.DataFrame({"id": ["1"], "city": ["Agra"]}), key=["id"])

    warehouse.upsert("contacts", pd.DataFrame({"id": ["2"], "tier": ["VIP"]}), key=["id"])

    read = warehouse.read_table("contacts").set_index("id")
    assert read.loc["2", "tier"] == "VIP"
    assert pd.isna(read.loc["1", "tier"])


def test_upsert_keeps_the_last_of_repeated_keys(warehouse: WarehouseResource):
    frame = pd.DataFrame({"id": ["1", "1"], "city": ["old", "new"]})

    warehouse.upsert("contacts", frame, key=["id"])
    warehouse.upsert("contacts", frame, key=["id"])

    assert warehouse.read_table("contacts").to_dict("list") == {"id": ["1"], "city": ["new"]}


def test_upsert_with_a_composite_key(warehouse: WarehouseResource):
    first = pd.DataFrame({"module": ["Contacts", "Leads"], "id": ["1", "1"], "n": [1, 2]})
    warehouse.upsert("records", first, key=["module", "id"])

    warehouse.upsert(
        "records", pd.DataFrame({"module": ["Leads"], "id": ["1"], "n": [5]}), ["module", "id"]
    )

    read = warehouse.read_table("records").sort_values("module")
    assert read["n"].tolist() == [1, 5]


def test_upsert_requires_its_key_columns(warehouse: WarehouseResource):
    with pytest.raises(ValueError, match="lacks key columns"):
        warehouse.upsert("contacts", pd.DataFrame({"city": ["Agra"]}), key=["id"])


def test_transaction_rolls_back_every_write_on_error(warehouse: WarehouseResource):
    warehouse.upsert("contacts", pd.DataFrame({"id": ["1"], "city": ["Agra"]}), key=["id"])

    with pytest.raises(RuntimeError), warehouse.transaction() as tx:
        tx.upsert("contacts", pd.DataFrame({"id": ["1"], "city": ["Delhi"]}), key=["id"])
        tx.set_state("cursor", "2026-01-01")
        raise RuntimeError("simulated failure between two writes")

    assert warehouse.read_table("contacts")["city"].tolist() == ["Agra"]
    assert warehouse.get_state("cursor") is None


def test_state_round_trips_and_overwrites(warehouse: WarehouseResource):
    assert warehouse.get_state("zoho.Contacts.cursor") is None

    warehouse.set_state("zoho.Contacts.cursor", "2026-01-01T00:00:00Z")
    warehouse.set_state("zoho.Contacts.cursor", "2026-02-01T00:00:00Z")

    assert warehouse.get_state("zoho.Contacts.cursor") == "2026-02-01T00:00:00Z"


def test_delete_keys_removes_only_the_named_rows(warehouse: WarehouseResource):
    ids = [str(n) for n in range(2000)]
    warehouse.upsert("contacts", pd.DataFrame({"id": ids}), key=["id"])

    deleted = warehouse.delete_keys("contacts", "id", ids[:1500])

    assert deleted == 1500
    assert sorted(warehouse.read_table("contacts")["id"]) == sorted(ids[1500:])


def test_read_table_of_a_missing_table_is_empty_with_the_asked_columns(
    warehouse: WarehouseResource,
):
    frame = warehouse.read_table("never_written", columns=["id", "city"])

    assert frame.empty
    assert list(frame.columns) == ["id", "city"]


def test_read_sql_types_columns_from_the_named_table(warehouse: WarehouseResource):
    warehouse.replace_table("contacts", contacts_frame())

    with warehouse.transaction() as tx:
        frame = tx.read_sql(
            "SELECT id, modified_time FROM contacts WHERE id = :id", {"id": "1001"}, "contacts"
        )

    assert frame["modified_time"].iloc[0] == pd.Timestamp("2026-01-02T04:30:00Z")


def test_large_writes_round_trip(warehouse: WarehouseResource):
    frame = pd.DataFrame({"id": [f"{n:019d}" for n in range(50_000)], "n": range(50_000)})

    warehouse.replace_table("big", frame, key=["id"])
    warehouse.upsert("big", frame.assign(n=frame["n"] + 1), key=["id"])

    read = warehouse.read_table("big")
    assert len(read) == 50_000
    assert int(read["n"].sum()) == int(frame["n"].sum()) + 50_000


def test_default_url_comes_from_the_environment(monkeypatch, tmp_path):
    url = f"sqlite:///{tmp_path / 'from_env.sqlite'}"
    monkeypatch.setenv("CT_WAREHOUSE_URL", url)

    assert WarehouseResource().resolved_url == url
    assert WarehouseResource().kind == "sqlite"


def test_upsert_keeping_existing_rows_only_adds_new_keys(warehouse: WarehouseResource):
    warehouse.upsert("outbox", pd.DataFrame({"id": ["e1"], "status": ["sent"]}), key=["id"])
    again = pd.DataFrame({"id": ["e1", "e2"], "status": ["pending", "pending"]})

    warehouse.upsert("outbox", again, key=["id"], keep_existing=True)

    read = warehouse.read_table("outbox").set_index("id")
    assert read["status"].to_dict() == {"e1": "sent", "e2": "pending"}


def test_numpy_keys_find_their_rows(warehouse: WarehouseResource):
    warehouse.replace_table("batches", pd.DataFrame({"seq": [5, 6, 7], "name": ["a", "b", "c"]}))

    found = warehouse.read_rows("batches", "seq", np.array([5, 7]))
    deleted = warehouse.delete_keys("batches", "seq", pd.Series([6]).unique())

    assert sorted(found["name"]) == ["a", "c"]
    assert deleted == 1


def test_a_nul_in_text_is_stored_as_the_replacement_character_on_both_databases(
    warehouse: WarehouseResource,
):
    frame = pd.DataFrame(
        {
            "id": pd.Series(["1\x00", "2"], dtype="str"),
            "name": pd.Series(["Asha\x00 Rao", None], dtype="str"),
            "note": pd.Series(["a\x00b\x00", 7], dtype="object"),
        }
    )

    warehouse.replace_table("contacts", frame, key=["id"])
    warehouse.upsert("contacts", frame.assign(name="Ravi\x00"), key=["id"])
    with warehouse.transaction() as tx:
        tx.append("contacts_log", frame)

    expected = {"1\ufffd": "Ravi\ufffd", "2": "Ravi\ufffd"}
    assert warehouse.read_table("contacts").set_index("id")["name"].to_dict() == expected
    assert warehouse.read_table("contacts_log")["note"].tolist() == ["a\ufffdb\ufffd", "7"]
    # A key is looked up as it was written: the NUL in the asked value is replaced too.
    assert warehouse.read_rows("contacts", "id", ["1\x00"])["name"].tolist() == ["Ravi\ufffd"]
    assert warehouse.delete_keys("contacts", "id", ["1\x00"]) == 1
    # A slice of a column shares the column's bytes: only its own values are judged.
    column = pd.Series(["a\x00", "b", "c\x00d"], dtype="str")
    warehouse.replace_table("first", column.iloc[1:2].to_frame("v"))
    warehouse.replace_table("rest", column.iloc[1:].to_frame("v"))
    assert warehouse.read_table("first")["v"].tolist() == ["b"]
    assert sorted(warehouse.read_table("rest")["v"]) == ["b", "c\ufffdd"]


def test_a_failed_statement_names_no_value_it_was_given(warehouse: WarehouseResource):
    warehouse.replace_table("contacts", pd.DataFrame({"id": ["1"], "n": [1]}), key=["id"])

    with pytest.raises(sa.exc.StatementError) as failed, warehouse.transaction() as tx:
        tx.execute(
            "INSERT INTO contacts (id, phone, email) VALUES (:id, :phone, :email)",
            {"id": "2", "phone": PHONE, "email": EMAIL},
        )

    explained = str(failed.value)
    assert "parameters hidden" in explained
    assert PHONE not in explained and EMAIL not in explained


@pytest.mark.parametrize("driver", ["psycopg2", "pg8000", "asyncpg"])
def test_a_postgres_url_for_another_driver_is_refused_before_the_first_write(driver: str):
    url = f"postgresql+{driver}://ct:secret-password@127.0.0.1:5432/ct_warehouse"
    warehouse = WarehouseResource(url=url)

    with pytest.raises(WarehouseUrlError, match=r"write the URL as postgresql\+psycopg://") as no:
        warehouse.upsert("contacts", pd.DataFrame({"id": ["1"]}), key=["id"])

    assert f"the {driver} driver" in str(no.value) and "secret-password" not in str(no.value)


def test_a_run_with_a_psycopg2_warehouse_fails_at_resource_setup_saying_what_to_write():
    @dg.asset
    def written(warehouse: WarehouseResource) -> None:
        warehouse.set_state("never", "reached")

    url = "postgresql+psycopg2://ct@127.0.0.1:5432/ct_warehouse"
    with pytest.raises(dg.DagsterResourceFunctionError) as failed:
        dg.materialize([written], resources={"warehouse": WarehouseResource(url=url)})

    assert isinstance(failed.value.__cause__, WarehouseUrlError)
    assert "postgresql+psycopg://" in str(failed.value.__cause__)


@pytest.mark.postgres
def test_bulk_writes_on_postgres_go_through_copy_not_one_insert_per_row():
    rows = 5_000
    frame = pd.DataFrame({"id": [f"{n:019d}" for n in range(rows)], "n": range(rows)})
    with postgres_schema() as url, tempfile.TemporaryDirectory() as folder:
        warehouse = WarehouseResource(url=url)
        trace = Path(folder) / "libpq.trace"
        with warehouse.engine.begin() as connection, trace.open("w") as sink:
            # libpq's own trace of every protocol message the client sends and receives.
            wire = connection.connection.driver_connection.pgconn
            wire.trace(sink.fileno())
            tx = WarehouseTransaction(connection)
            tx.replace_table("big", frame, key=["id"])
            tx.upsert("big", frame.assign(n=frame["n"] + 1), key=["id"])
            tx.append("big_log", frame)
            wire.untrace()
        sent = [line.split("\t") for line in trace.read_text().splitlines()]
        assert int(warehouse.read_table("big")["n"].sum()) == sum(range(rows)) + rows
        dispose_engine(url)

    queries = [fields[-1] for fields in sent if len(fields) > 3 and fields[3] == "Query"]
    statements = [
        fields[-1] for fields in sent if len(fields) > 3 and fields[3] in ("Query", "Parse")
    ]
    copies = [query for query in queries if query.lstrip(' "').startswith("COPY ")]
    assert len(copies) == 3
    assert all("FROM STDIN" in query for query in copies)
    assert sum(1 for fields in sent if len(fields) > 3 and fields[3] == "CopyData") >= 3
    assert not [text for text in statements if "VALUES" in text.upper()]
    # The statement count does not grow with the rows: a handful per write.
    assert len(statements) < 60


@pytest.mark.postgres
def test_postgres_refusing_a_value_says_where_without_the_value():
    with postgres_schema() as url:
        warehouse = WarehouseResource(url=url)
        warehouse.replace_table(
            "people", pd.DataFrame({"identity": [PHONE], "n": [1]}), ["identity"]
        )
        refusals = []
        for write in (
            lambda tx: tx.append("people", pd.DataFrame({"identity": [EMAIL], "n": [EMAIL]})),
            lambda tx: tx.append("people", pd.DataFrame({"identity": [PHONE], "n": [2]})),
            lambda tx: tx.read_rows("people", "n", [f"{PHONE} {EMAIL}"]),
        ):
            with pytest.raises(WarehouseDataError) as refused, warehouse.transaction() as tx:
                write(tx)
            refusals.append(str(refused.value))
        kept = warehouse.read_table("people").to_dict("list")
        dispose_engine(url)

    typed, duplicate, looked_up = refusals
    assert "InvalidTextRepresentation" in typed and 'COPY people, line 1, column n: "..."' in typed
    assert "UniqueViolation (SQLSTATE 23505)" in duplicate and '"people_pkey"' in duplicate
    assert "InvalidTextRepresentation" in looked_up
    assert not [text for text in refusals if PHONE in text or EMAIL in text]
    assert kept == {"identity": [PHONE], "n": [1]}
