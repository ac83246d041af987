"""The history store: check results and their rollups in SQLite or PostgreSQL.

:class:`Store` is the one entry point; :class:`StoreError` is what it raises when the
database cannot be used.
"""

from pudimd.store.errors import StoreError
from pudimd.store.records import Rollup, StoredResult
from pudimd.store.store import Store

__all__ = ["Rollup", "Store", "StoreError", "StoredResult"]
