"""The SQL warehouse: every derived table and all sync state, behind one SQLAlchemy URL.

`CT_WAREHOUSE_URL` selects the database: an SQLite file by default (local runs, the demo),
PostgreSQL in production. Tables are written from pandas DataFrames; on PostgreSQL bulk writes go
through COPY, on SQLite through one `executemany` per write. PostgreSQL's text cannot hold the NUL
character, so on both databases every text value is written with U+FFFD in its place: a CRM field
carrying one is stored, and the two warehouses hold the same tables.
"""

from __future__ import annotations

import gc
import os
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import sqlalchemy as sa
from pydantic import Field
from sqlalchemy.engine import Connection, Engine

WAREHOUSE_URL_ENV_VAR = "CT_WAREHOUSE_URL"
DEFAULT_WAREHOUSE_FILE = Path(".ct_pipeline") / "warehouse.sqlite"
STATE_TABLE = "sync_state"
# SQLite waits this long for a lock held by another process (a sensor and a run) before failing.
SQLITE_BUSY_TIMEOUT_MS = 30_000
# Page cache per connection (SQLite's default is 2 MiB): a million-row table's key index then
# stays in memory while rows are inserted in key order it does not follow (1M rows with random
# text keys: 8.1 s to insert with the default, 6.0 s with this).
SQLITE_CACHE_KIB = 64 * 1024
# A failed statement's exception (and so a run's failure event) must not carry the row values it
# bound: they are customers' phone numbers and emails.
HIDE_PARAMETERS = True
NUL = "\x00"
# The Unicode replacement character: what a reader of the table sees where the NUL was.
NUL_REPLACEMENT = "\ufffd"

# Bulk writes use psycopg 3's COPY API, which no other PostgreSQL driver has.
POSTGRES_DRIVER = "psycopg"

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def default_warehouse_url() -> str:
    """The warehouse URL: `$CT_WAREHOUSE_URL`, else an SQLite file under `.ct_pipeline/`."""
    configured = os.environ.get(WAREHOUSE_URL_ENV_VAR)
    if configured:
        return configured
    return f"sqlite:///{DEFAULT_WAREHOUSE_FILE.resolve()}"


class WarehouseUrlError(sa.exc.ArgumentError):
    """The warehouse URL names a database or driver the warehouse cannot write with."""


class WarehouseDataError(Exception):
    """PostgreSQL refused rows it was given; the message names where, never the values."""


class WarehouseResource(dg.ConfigurableResource):
    """The SQL warehouse holding derived tables and sync state (SQLite or PostgreSQL)."""

    url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; when unset, $CT_WAREHOUSE_URL, else an SQLite file.",
    )

    @property
    def resolved_url(self) -> str:
        """The URL in use, after applying the environment and the default."""
        return self.url or default_warehouse_url()

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Refuse an unusable URL when a run starts, before any asset reads or writes."""
        check_warehouse_url(self.resolved_url)

    @property
    def engine(self) -> Engine:
        """The process-wide engine for this URL."""
        return engine_for(self.resolved_url)

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return self.engine.dialect.name

    @property
    def kind(self) -> str:
        """The Dagster kind tag for this warehouse."""
        return "postgres" if self.dialect == "postgresql" else "sqlite"

    @contextmanager
    def transaction(self) -> Iterator[WarehouseTransaction]:
        """Several reads and writes that commit together or not at all."""
        with self.engine.begin() as connection, _values_kept_out():
            yield WarehouseTransaction(connection)

    def read_table(self, name: str, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The whole table as a DataFrame; an empty frame (of `columns`) if it does not exist."""
        with self.engine.connect() as connection, _values_kept_out():
            return WarehouseTransaction(connection).read_table(name, columns)

    def read_sql(self, sql: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """The result of one SELECT as a DataFrame (columns typed as the table declares)."""
        with self.engine.connect() as connection, _values_kept_out():
            return WarehouseTransaction(connection).read_sql(sql, params)

    def table_exists(self, name: str) -> bool:
        """Whether the table exists."""
        return sa.inspect(self.engine).has_table(name)

    def column_names(self, name: str) -> list[str]:
        """The table's columns in order; empty if it does not exist."""
        if not self.table_exists(name):
            return []
        return [column["name"] for column in sa.inspect(self.engine).get_columns(name)]

    def read_rows(
        self,
        name: str,
        column: str,
        values: Iterable[Any],
        columns: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """The rows whose `column` is one of `values` (read through its index, if it has one)."""
        with self.engine.connect() as connection, _values_kept_out():
            return WarehouseTransaction(connection).read_rows(name, column, values, columns)

    def create_index(self, name: str, columns: Sequence[str]) -> None:
        """Index `columns` of a table, if that index does not exist yet."""
        with self.transaction() as tx:
            tx.create_index(name, columns)

    def replace_table(self, name: str, frame: pd.DataFrame, key: Sequence[str] = ()) -> int:
        """Replace the table's contents and schema with `frame`; returns rows written."""
        with self.transaction() as tx:
            return tx.replace_table(name, frame, key)

    def upsert(
        self, name: str, frame: pd.DataFrame, key: Sequence[str], keep_existing: bool = False
    ) -> int:
        """Insert or update rows by `key`, creating the table or new columns as needed.

        With `keep_existing`, rows whose key is already present are left as they are.
        """
        with self.transaction() as tx:
            return tx.upsert(name, frame, key, keep_existing)

    def delete_keys(self, name: str, column: str, values: Iterable[Any]) -> int:
        """Delete the rows whose `column` is one of `values`; returns rows deleted."""
        with self.transaction() as tx:
            return tx.delete_keys(name, column, values)

    def get_state(self, key: str) -> str | None:
        """A value of the sync state (cursors and the like), or None if never set."""
        with self.engine.connect() as connection, _values_kept_out():
            return WarehouseTransaction(connection).get_state(key)

    def set_state(self, key: str, value: str) -> None:
        """Set a value of the sync state."""
        with self.transaction() as tx:
            tx.set_state(key, value)


class WarehouseTransaction:
    """Warehouse operations bound to one connection (and so to one transaction)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.dialect = connection.dialect.name

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> sa.CursorResult[Any]:
        """Run one SQL statement with named parameters (`:name`)."""
        return self.connection.execute(sa.text(sql), params or {})

    def execute_in(
        self, sql: str, keys: Iterable[Any], params: dict[str, Any] | None = None
    ) -> int:
        """Run `sql`, whose `IN :keys` takes `keys`, in chunks; returns rows affected."""
        statement = sa.text(sql).bindparams(sa.bindparam("keys", expanding=True))
        values = _plain_values(keys)
        affected = 0
        for start in range(0, len(values), _IN_CHUNK):
            chunk = values[start : start + _IN_CHUNK]
            affected += self.connection.execute(
                statement, {**(params or {}), "keys": chunk}
            ).rowcount
        return affected

    def table_exists(self, name: str) -> bool:
        """Whether the table exists (as seen inside this transaction)."""
        return sa.inspect(self.connection).has_table(name)

    def read_table(self, name: str, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The whole table as a DataFrame; an empty frame (of `columns`) if it does not exist."""
        if not self.table_exists(name):
            return pd.DataFrame({column: pd.Series(dtype="str") for column in columns or ()})
        selected = ", ".join(self._quote(column) for column in columns) if columns else "*"
        return self.read_sql(f"SELECT {selected} FROM {self._quote(name)}", table=name)

    def read_rows(
        self,
        name: str,
        column: str,
        values: Iterable[Any],
        columns: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """The rows whose `column` is one of `values`, in chunks of bound parameters."""
        if not self.table_exists(name):
            return pd.DataFrame({c: pd.Series(dtype="str") for c in columns or ()})
        selected = ", ".join(self._quote(c) for c in columns) if columns else "*"
        statement = sa.text(
            f"SELECT {selected} FROM {self._quote(name)} WHERE {self._quote(column)} IN :keys"
        ).bindparams(sa.bindparam("keys", expanding=True))
        keys = list(dict.fromkeys(value for value in _plain_values(values) if value is not None))
        rows: list[Any] = []
        names: list[str] = list(columns or ())
        for start in range(0, len(keys), _IN_CHUNK):
            result = self.connection.execute(statement, {"keys": keys[start : start + _IN_CHUNK]})
            names = list(result.keys())
            rows.extend(result.cursor.fetchall() if result.cursor else [])
        types = self._column_types(name)
        if not names:
            names = list(types)
        return _typed(_frame(rows, names, types), types, self.dialect)

    def create_index(self, name: str, columns: Sequence[str]) -> None:
        """Index `columns` of a table, if that index does not exist yet."""
        index = f"ix_{name}_{'_'.join(columns)}".lower()[:63]
        quoted = ", ".join(self._quote(column) for column in columns)
        self.execute(
            f"CREATE INDEX IF NOT EXISTS {self._quote(index)} ON {self._quote(name)} ({quoted})"
        )

    def read_sql(
        self, sql: str, params: dict[str, Any] | None = None, table: str | None = None
    ) -> pd.DataFrame:
        """The result of one SELECT as a DataFrame, typed by `table`'s declared column types."""
        result = self.connection.execute(sa.text(sql), params or {})
        types = self._column_types(table) if table else {}
        with _collector_paused():
            rows = result.cursor.fetchall() if result.cursor else []
            frame = _frame(rows, list(result.keys()), types)
        return _typed(frame, types, self.dialect)

    def replace_table(self, name: str, frame: pd.DataFrame, key: Sequence[str] = ()) -> int:
        """Replace the table's contents and schema with `frame`; returns rows written."""
        if self.table_exists(name):
            self.execute(f"DROP TABLE {self._quote(name)}")
        self._create_table(name, frame, key)
        return self._insert(name, frame)

    def upsert(
        self, name: str, frame: pd.DataFrame, key: Sequence[str], keep_existing: bool = False
    ) -> int:
        """Insert or update rows by `key`; with `keep_existing`, present keys are left alone."""
        if not key:
            raise ValueError(f"upsert into {name} needs at least one key column")
        missing_key = [column for column in key if column not in frame.columns]
        if missing_key:
            raise ValueError(f"upsert into {name}: the frame lacks key columns {missing_key}")
        frame = frame.drop_duplicates(subset=list(key), keep="last")
        if not self.table_exists(name):
            self._create_table(name, frame, key)
            return self._insert(name, frame)
        self._add_missing_columns(name, frame)
        if frame.empty:
            return 0
        if self.dialect == "postgresql":
            return self._upsert_postgres(name, frame, key, keep_existing)
        return self._insert(name, frame, conflict_key=key, keep_existing=keep_existing)

    def append(self, name: str, frame: pd.DataFrame) -> int:
        """Add rows to a table (created from `frame` if missing); returns rows written."""
        if not self.table_exists(name):
            self._create_table(name, frame, ())
        else:
            self._add_missing_columns(name, frame)
        return self._insert(name, frame)

    def delete_keys(self, name: str, column: str, values: Iterable[Any]) -> int:
        """Delete the rows whose `column` is one of `values`; returns rows deleted."""
        if not self.table_exists(name):
            return 0
        return self.execute_in(
            f"DELETE FROM {self._quote(name)} WHERE {self._quote(column)} IN :keys", values
        )

    def get_state(self, key: str) -> str | None:
        """A value of the sync state, or None if never set."""
        if not self.table_exists(STATE_TABLE):
            return None
        row = self.execute(
            f"SELECT value FROM {STATE_TABLE} WHERE key = :key", {"key": key}
        ).first()
        return None if row is None else row[0]

    def set_state(self, key: str, value: str) -> None:
        """Set a value of the sync state."""
        self.upsert(STATE_TABLE, pd.DataFrame({"key": [key], "value": [value]}), key=["key"])

    def _quote(self, identifier: str) -> str:
        return self.connection.dialect.identifier_preparer.quote(identifier)

    def _column_types(self, table: str) -> dict[str, sa.types.TypeEngine[Any]]:
        columns = sa.inspect(self.connection).get_columns(table)
        return {column["name"]: column["type"] for column in columns}

    def _create_table(self, name: str, frame: pd.DataFrame, key: Sequence[str]) -> None:
        table = sa.Table(
            name,
            sa.MetaData(),
            *(
                sa.Column(column, _sql_type(frame[column]), primary_key=column in key)
                for column in frame.columns
            ),
        )
        table.create(self.connection)

    def _add_missing_columns(self, name: str, frame: pd.DataFrame) -> None:
        existing = set(self._column_types(name))
        for column in frame.columns:
            if column not in existing:
                sql_type = _sql_type(frame[column]).compile(dialect=self.connection.dialect)
                self.execute(
                    f"ALTER TABLE {self._quote(name)} ADD COLUMN {self._quote(column)} {sql_type}"
                )

    def _insert(
        self,
        name: str,
        frame: pd.DataFrame,
        conflict_key: Sequence[str] = (),
        keep_existing: bool = False,
    ) -> int:
        if frame.empty:
            return 0
        columns = list(frame.columns)
        if self.dialect == "postgresql":
            self._copy_postgres(name, frame)
            return len(frame)
        quoted = ", ".join(self._quote(column) for column in columns)
        placeholders = ", ".join("?" for _ in columns)
        sql = f"INSERT INTO {self._quote(name)} ({quoted}) VALUES ({placeholders})"
        updates = [] if keep_existing else [c for c in columns if c not in conflict_key]
        if conflict_key:
            target = ", ".join(self._quote(column) for column in conflict_key)
            if updates:
                assignments = ", ".join(
                    f"{self._quote(column)} = excluded.{self._quote(column)}" for column in updates
                )
                sql += f" ON CONFLICT ({target}) DO UPDATE SET {assignments}"
            else:
                sql += f" ON CONFLICT ({target}) DO NOTHING"
        cursor = self.connection.connection.driver_connection.cursor()
        try:
            with _collector_paused():
                cursor.executemany(sql, _rows(frame, self.dialect))
        finally:
            cursor.close()
        return len(frame)

    def _copy_postgres(self, name: str, frame: pd.DataFrame) -> None:
        quoted = ", ".join(self._quote(column) for column in frame.columns)
        driver = self.connection.connection.driver_connection
        with (
            driver.cursor() as cursor,
            cursor.copy(f"COPY {self._quote(name)} ({quoted}) FROM STDIN") as copy,
            _collector_paused(),
        ):
            for row in _rows(frame, self.dialect):
                copy.write_row(row)

    def _upsert_postgres(
        self, name: str, frame: pd.DataFrame, key: Sequence[str], keep_existing: bool
    ) -> int:
        staging = f"{name}__staging"
        self.execute(f"DROP TABLE IF EXISTS {self._quote(staging)}")
        columns = ", ".join(self._quote(column) for column in frame.columns)
        self.execute(
            f"CREATE TEMP TABLE {self._quote(staging)} ON COMMIT DROP AS "
            f"SELECT {columns} FROM {self._quote(name)} WITH NO DATA"
        )
        self._copy_postgres(staging, frame)
        target = ", ".join(self._quote(column) for column in key)
        updates = [] if keep_existing else [c for c in frame.columns if c not in key]
        action = (
            "DO UPDATE SET "
            + ", ".join(f"{self._quote(c)} = EXCLUDED.{self._quote(c)}" for c in updates)
            if updates
            else "DO NOTHING"
        )
        self.execute(
            f"INSERT INTO {self._quote(name)} ({columns}) SELECT {columns} "
            f"FROM {self._quote(staging)} ON CONFLICT ({target}) {action}"
        )
        self.execute(f"DROP TABLE {self._quote(staging)}")
        return len(frame)


@contextmanager
def _values_kept_out() -> Iterator[None]:
    """Turn PostgreSQL's refusal of a value into a WarehouseDataError without the value.

    hide_parameters keeps bound values out of SQLAlchemy's text, but PostgreSQL's own message
    quotes the value it refused ('invalid input syntax for type bigint: "..."', 'Key
    (identity)=(...) already exists'), and a run's failure event would carry it.
    """
    try:
        yield
    except (sa.exc.DBAPIError, psycopg.Error) as error:
        refused = getattr(error, "orig", error)
        if not isinstance(refused, psycopg.DataError | psycopg.IntegrityError):
            raise
        raise WarehouseDataError(_without_values(refused)) from None


_QUOTED = re.compile(r'"[^"]*"')


def _without_values(refused: psycopg.Error) -> str:
    """PostgreSQL's refusal with every quoted text but the names of tables, columns and
    constraints replaced by "...", and without its DETAIL (which lists the key's values)."""
    diagnosis = refused.diag
    names = {diagnosis.table_name, diagnosis.column_name, diagnosis.constraint_name} - {None}

    def masked(text: str | None) -> str:
        return _QUOTED.sub(
            lambda quoted: quoted[0] if quoted[0].strip('"') in names else '"..."', text or ""
        )

    where = f" ({masked(diagnosis.context)})" if diagnosis.context else ""
    return (
        f"PostgreSQL refused a value: {type(refused).__name__} (SQLSTATE {refused.sqlstate}): "
        f"{masked(diagnosis.message_primary)}{where}. The value is left out, as it may be "
        "personal data; look for it in that column of the rows being written."
    )


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while millions of row tuples are made: they hold
    no reference cycles, yet their allocation alone sets off collections that cost a quarter of
    a large read."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def engine_for(url: str) -> Engine:
    """One engine per URL per process (engines own connection pools)."""
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _create_engine(url)
            _engines[url] = engine
        return engine


def dispose_engine(url: str) -> None:
    """Close the pooled connections of the engine for `url`, if one was created."""
    with _engines_lock:
        engine = _engines.pop(url, None)
    if engine is not None:
        engine.dispose()


_IN_CHUNK = 900  # below SQLite's default limit of 999 bound parameters in older builds


def _plain_values(values: Iterable[Any]) -> list[Any]:
    """Key values as the database driver binds them: NumPy scalars become Python numbers (SQLite
    would bind an int64 as bytes, and match nothing), and text is stored with NUL replaced."""
    return [
        value.item() if isinstance(value, np.generic) else replace_nul(value) for value in values
    ]


def check_warehouse_url(url: str) -> None:
    """Raise WarehouseUrlError when `url` selects a PostgreSQL driver other than psycopg 3."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "postgresql" or parsed.get_driver_name() == POSTGRES_DRIVER:
        return
    raise WarehouseUrlError(
        f"the warehouse URL ({WAREHOUSE_URL_ENV_VAR}) selects the {parsed.get_driver_name()} "
        f"driver ({parsed.drivername}://); the warehouse writes through psycopg 3's COPY: "
        f"write the URL as postgresql+{POSTGRES_DRIVER}://..."
    )


def _create_engine(url: str) -> Engine:
    check_warehouse_url(url)
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            hide_parameters=HIDE_PARAMETERS,
        )

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            # WAL lets a sensor read while a run writes.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
            cursor.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True, hide_parameters=HIDE_PARAMETERS)


def _sql_type(series: pd.Series) -> sa.types.TypeEngine[Any]:
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return sa.Boolean()
    if pd.api.types.is_integer_dtype(dtype):
        return sa.BigInteger()
    if pd.api.types.is_float_dtype(dtype):
        return sa.Double()
    if isinstance(dtype, pd.DatetimeTZDtype):
        # Declared TIMESTAMP so that SQLite, which keeps no time zone flag, can tell it apart
        # from a naive DATETIME when the table is read back.
        return sa.TIMESTAMP(timezone=True)
    if pd.api.types.is_datetime64_dtype(dtype):
        return sa.DateTime()
    return sa.Text()


def _rows(frame: pd.DataFrame, dialect: str) -> Iterator[tuple[Any, ...]]:
    """Rows as tuples of plain Python values, missing values as None."""
    columns = []
    for name in frame.columns:
        series = frame[name]
        if isinstance(series.dtype, pd.DatetimeTZDtype):
            series = series.dt.tz_convert("UTC")
            if dialect == "sqlite":
                series = series.dt.tz_localize(None)
        if dialect == "sqlite" and pd.api.types.is_datetime64_dtype(series.dtype):
            series = series.dt.strftime("%Y-%m-%d %H:%M:%S.%f")
        values = series.astype(object).where(series.notna(), None).tolist()
        if pd.api.types.is_string_dtype(series.dtype):
            values = _without_nul(series, values)
        columns.append(values)
    return zip(*columns, strict=True)


def _without_nul(series: pd.Series, values: list[Any]) -> list[Any]:
    """A text column's values with each NUL replaced (the list itself when none holds one)."""
    if not _holds_nul(series, values):
        return values
    return [replace_nul(value) for value in values]


def _holds_nul(series: pd.Series, values: list[Any]) -> bool:
    """Whether a text column may hold a NUL. Arrow-backed text is judged from its UTF-8 bytes,
    where only U+0000 is a zero byte: at a million values that takes a millisecond, a substring
    search a tenth of a second."""
    if isinstance(series.dtype, pd.StringDtype) and series.dtype.storage == "pyarrow":
        arrow = pa.array(series.array)
        chunks = arrow.chunks if isinstance(arrow, pa.ChunkedArray) else [arrow]
        if all(chunk.type in _ARROW_OFFSETS for chunk in chunks):
            return any(_has_zero_byte(chunk) for chunk in chunks)
    return any(isinstance(value, str) and NUL in value for value in values)


_ARROW_OFFSETS = {pa.string(): np.int32, pa.large_string(): np.int64}


def _has_zero_byte(chunk: pa.Array) -> bool:
    """Whether the bytes behind an Arrow string array's values hold a zero (a null slot's bytes
    may count too: the caller then only looks closer)."""
    _, offsets, data = chunk.buffers()
    if len(chunk) == 0 or data is None:
        return False
    bounds = np.frombuffer(offsets, dtype=_ARROW_OFFSETS[chunk.type])
    start, end = bounds[chunk.offset], bounds[chunk.offset + len(chunk)]
    return not np.frombuffer(data, dtype=np.uint8)[start:end].all()


def replace_nul(value: Any) -> Any:
    """`value` with U+FFFD for each NUL if it is text (PostgreSQL's text cannot hold NUL)."""
    if isinstance(value, str) and NUL in value:
        return value.replace(NUL, NUL_REPLACEMENT)
    return value


def _timestamps(values: pd.Series) -> pd.Series:
    """Timestamps read back (SQLite's ISO 8601 text, or the driver's datetimes), in UTC."""
    try:
        # One format for the whole column is an order of magnitude faster than `mixed`.
        return pd.to_datetime(values, utc=True, format="ISO8601")
    except (ValueError, TypeError):
        return pd.to_datetime(values, utc=True, format="mixed")


def _frame(
    rows: list[Any], names: list[str], types: dict[str, sa.types.TypeEngine[Any]]
) -> pd.DataFrame:
    """A frame built column by column from the driver's row tuples.

    The rows come straight from the DB-API cursor, not through SQLAlchemy's row objects, and
    each column is built from one list: at a million rows this is several times faster, and
    lighter, than a DataFrame made from a list of rows. Text columns (and SQLite's timestamps,
    which are text) go through Arrow, which skips pandas' type inference.
    """
    if not rows:
        return pd.DataFrame({name: pd.Series(dtype="object") for name in names})
    columns = zip(*rows, strict=True)
    frame = pd.DataFrame(
        {
            position: _column(values, types.get(name))
            for position, (name, values) in enumerate(zip(names, columns, strict=True))
        }
    )
    frame.columns = names
    return frame


def _column(values: tuple[Any, ...], sql_type: sa.types.TypeEngine[Any] | None) -> pd.Series:
    if isinstance(sql_type, sa.String | sa.DateTime):
        try:
            return pd.Series(pa.array(values, type=pa.large_string()), dtype="str")
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass  # not all text (PostgreSQL's datetimes): pandas infers the type below
    return pd.Series(values)


def _typed(
    frame: pd.DataFrame, types: dict[str, sa.types.TypeEngine[Any]], dialect: str
) -> pd.DataFrame:
    """Coerce columns read back from SQL to the pandas dtypes they were written from."""
    for column in frame.columns:
        sql_type = types.get(column)
        if sql_type is None:
            continue
        if isinstance(sql_type, sa.DateTime):
            frame[column] = _timestamps(frame[column])
            aware = sql_type.timezone or (
                dialect == "sqlite" and isinstance(sql_type, sa.TIMESTAMP)
            )
            if not aware:
                frame[column] = frame[column].dt.tz_localize(None)
        elif isinstance(sql_type, sa.Boolean):
            frame[column] = frame[column].astype("boolean")
        elif isinstance(sql_type, sa.Integer):
            frame[column] = frame[column].astype("Int64")
        elif isinstance(sql_type, sa.Float):
            frame[column] = pd.to_numeric(frame[column]).astype("float64")
        elif isinstance(sql_type, sa.String):
            frame[column] = frame[column].astype("str")
    return frame
