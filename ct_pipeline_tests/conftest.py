"""Fixtures shared by every test: warehouses on SQLite and, when configured, on PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from ct_pipeline.warehouse import WarehouseResource
from ct_pipeline.warehouse.resource import dispose_engine

POSTGRES_URL_ENV_VAR = "CT_TEST_POSTGRES_URL"
POSTGRES_SKIP_REASON = (
    f"PostgreSQL tests need {POSTGRES_URL_ENV_VAR}, e.g. "
    "postgresql+psycopg://postgres@127.0.0.1:5432/ct_pipeline_test (bash .ci/run sets it)"
)


def postgres_url() -> str | None:
    """The URL of the test PostgreSQL database, when the environment names one."""
    return os.environ.get(POSTGRES_URL_ENV_VAR) or None


requires_postgres = pytest.mark.skipif(postgres_url() is None, reason=POSTGRES_SKIP_REASON)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=[pytest.mark.postgres])])
def warehouse(request: pytest.FixtureRequest, tmp_path) -> Iterator[WarehouseResource]:
    """An empty warehouse: an SQLite file, or a fresh schema in the test PostgreSQL database."""
    if request.param == "sqlite":
        yield WarehouseResource(url=f"sqlite:///{tmp_path / 'warehouse.sqlite'}")
        return
    with postgres_schema() as url:
        yield WarehouseResource(url=url)
        dispose_engine(url)


@pytest.fixture
def sqlite_warehouse(tmp_path) -> WarehouseResource:
    """An empty SQLite warehouse, for tests that are about behaviour, not the database."""
    return WarehouseResource(url=f"sqlite:///{tmp_path / 'warehouse.sqlite'}")


class postgres_schema:
    """A throw-away schema in the test PostgreSQL database, and a URL whose tables land in it."""

    def __enter__(self) -> str:
        base = postgres_url()
        if base is None:
            pytest.skip(POSTGRES_SKIP_REASON)
        self.schema = f"t_{uuid.uuid4().hex[:12]}"
        self.admin = sa.create_engine(base, poolclass=sa.pool.NullPool)
        with self.admin.begin() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA "{self.schema}"'))
        url = sa.engine.make_url(base).update_query_dict(
            {"options": f"-csearch_path={self.schema}"}
        )
        return url.render_as_string(hide_password=False)

    def __exit__(self, *exc_info: object) -> None:
        with self.admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{self.schema}" CASCADE'))
        self.admin.dispose()
