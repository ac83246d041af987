"""The ``auth`` section of the config file."""

from __future__ import annotations

from pydantic import Field

from pudimd.settings import StrictModel

__all__ = ["AuthConfig"]


class AuthConfig(StrictModel):
    """Who may use the HTTP API, and how they prove it."""

    enabled: bool = Field(
        True,
        description="Require a token or a signed-in user on /api/v1 (401 without, 403 when "
        "the role does not allow it)",
    )
