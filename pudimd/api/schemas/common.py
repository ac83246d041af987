"""What every body shares: the base models and the RFC 9457 problem document."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Answer", "Problem", "ProblemError", "Request", "Time"]

Time = str
"""An RFC 3339 time (UTC) as the API writes it."""


class Answer(BaseModel):
    """A response body: properties it does not name may appear."""

    model_config = ConfigDict(extra="allow")


class Request(BaseModel):
    """A request body that refuses fields it does not name."""

    model_config = ConfigDict(extra="forbid")


class ProblemError(Answer):
    """One problem with the input: where it is and why."""

    field: str = Field(description="The field path (``targets[0].interval``), or empty")
    message: str
    line: int | None = Field(None, description="Line in the config text, when known")
    column: int | None = None
    target: str | None = Field(None, description="The target the field belongs to")
    location: str | None = Field(None, description="``file:line:column``")


class Problem(Answer):
    """An RFC 9457 problem document (``application/problem+json``)."""

    type: str = Field(description="Always ``about:blank``: the status says what it is")
    title: str = Field(description="The status's phrase")
    status: int
    detail: str = Field(description="What went wrong, for a person")
    errors: list[ProblemError] = Field(
        default_factory=list, description="Each bad field of the input (absent when none)"
    )
