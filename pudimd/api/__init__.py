"""The one HTTP listener: metrics, health, reload (later the APIs and the web UI)."""

from pudimd.api.app import make_app, serve

__all__ = ["make_app", "serve"]
