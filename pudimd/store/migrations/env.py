"""Alembic environment: runs the migrations on the connection that
:func:`pudimd.store.migrate.upgrade` passes in ``config.attributes["connection"]``."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from pudimd.store.tables import metadata

# Any constant: serialises migrations of replicas starting together on PostgreSQL.
_PG_LOCK_KEY = 0x707564696D64  # "pudimd"


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")
        context.run_migrations()


_connection = context.config.attributes.get("connection")
if not isinstance(_connection, Connection):
    raise RuntimeError(
        "pudimd's migrations run from pudimd.store.migrate.upgrade() with a live connection;"
        " there is no alembic.ini and no offline mode"
    )
_run(_connection)
