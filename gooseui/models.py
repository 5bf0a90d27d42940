"""The shapes the console exchanges: project records, statuses, request bodies."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gooseui.config import User

__all__ = ["MessageIn", "NameIn", "Project", "SessionOut", "Status", "User"]


class Status(StrEnum):
    INACTIVE = "inactive"
    ACTIVATING = "activating"
    ACTIVE = "active"
    DEACTIVATING = "deactivating"
    FAILED = "failed"
    DELETING = "deleting"

    @property
    def in_transition(self) -> bool:
        return self in {Status.ACTIVATING, Status.DEACTIVATING, Status.DELETING}


class Project(BaseModel):
    """A project as the REST API and the UI see it (DESIGN section 4b)."""

    model_config = ConfigDict(frozen=True)

    user_id: str
    project_id: str
    name: str
    namespace: str
    deployment: str
    service: str
    ingress: str | None = None
    status: Status = Status.INACTIVE
    status_reason: str | None = None
    status_message: str | None = None
    endpoint: str | None = None
    goose_session_id: str | None = None
    created_at: datetime
    updated_at: datetime
    last_activated_at: datetime | None = None

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Project:
        return cls.model_validate({k: v for k, v in doc.items() if k in cls.model_fields})


class NameIn(BaseModel):
    """Body of project create and rename; the name's rules live in the service."""

    name: str


class MessageIn(BaseModel):
    """Body of a chat message; `session_id` picks a conversation other than the current one."""

    message: str
    # a token, never a path: the id goes into the agent's URL (no `.`, `..`, `/` or `%`)
    session_id: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


class SessionOut(BaseModel):
    session_id: str
