"""The shapes the console exchanges: project records, statuses, request bodies."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gooseui import textrules
from gooseui.config import User

__all__ = [
    "ChatEvent",
    "MessageIn",
    "NameIn",
    "ProgressEvent",
    "Project",
    "ProjectIn",
    "ProjectPatch",
    "SessionOut",
    "Status",
    "Step",
    "User",
]


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

    # What an operator may ask of a project in this status: the lifecycle checks its
    # transitions against these, and the pages offer only the buttons they allow.

    # (Activating an active project, or deactivating an inactive one, is a no-op the
    # lifecycle answers at once; no button offers it.)

    @property
    def can_activate(self) -> bool:
        return self in {Status.INACTIVE, Status.FAILED}

    @property
    def can_deactivate(self) -> bool:
        """`activating` too: stopping an activation cancels it. `failed` too: a refused
        scale-down can leave a failed project running, and stopping it clears the failure."""
        return self in {Status.ACTIVE, Status.ACTIVATING, Status.FAILED}

    @property
    def can_chat(self) -> bool:
        return self == Status.ACTIVE

    @property
    def can_delete(self) -> bool:
        return self in {Status.INACTIVE, Status.ACTIVE, Status.FAILED}


class Step(StrEnum):
    """The step an event reports: what the lifecycle (or the service) was doing."""

    CURRENT = "current"  # the first event of `GET …/events`: the status as it is
    CREATED = "created"
    RENAMED = "renamed"
    CHANGED = "changed"  # a setting of the project (keep_running)
    DELETED = "deleted"
    # a transition begins (its timeline starts again at these)
    START = "start"
    REPAIR = "repair"
    # activation
    AGENT = "agent"
    NAMESPACE = "namespace"
    SECRETS = "secrets"
    APPLY = "apply"
    APPLYING = "applying"
    WAITING = "waiting"
    SCHEDULING = "scheduling"
    UNSCHEDULABLE = "unschedulable"
    PULLING = "pulling"
    STARTING = "starting"
    ROUTE = "route"
    HEALTH = "health"
    READY = "ready"
    CANCEL = "cancel"
    # deactivation and deletion
    SCALE = "scale"
    TERMINATING = "terminating"
    STOPPED = "stopped"
    DELETE = "delete"
    FAILED = "failed"
    RECONCILED = "reconciled"


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
    # the last message, reply or agent work: what the idle stop counts from
    last_activity_at: datetime | None = None
    # never stopped for being idle
    keep_running: bool = False
    # the agent's model for this project (overrides the agent environment's GOOSE_MODEL)
    model: str | None = None

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Project:
        return cls.model_validate({k: v for k, v in doc.items() if k in cls.model_fields})


# published, not enforced by pydantic: the service checks them and answers with its own codes
def _name_schema(schema: dict[str, Any]) -> None:
    schema.update(minLength=1, pattern=textrules.name_pattern())


def _message_schema(schema: dict[str, Any]) -> None:
    schema.update(minLength=1, maxLength=textrules.MAX_MESSAGE, pattern=textrules.message_pattern())


class NameIn(BaseModel):
    """Body of project create and rename.

    The service checks the name (and says which rule failed); the schema publishes the
    same rules, generated from `textrules`, so that the two cannot drift apart.
    """

    name: str = Field(
        description=(
            f"1 to {textrules.MAX_NAME} characters once surrounding whitespace is trimmed; "
            "no control or format characters, no line separators. Stored trimmed and in NFC; "
            "unique per user regardless of case."
        ),
        json_schema_extra=_name_schema,
    )


class MessageIn(BaseModel):
    """Body of a chat message; `session_id` picks a conversation other than the current one."""

    message: str = Field(
        description=(f"Not blank; at most {textrules.MAX_MESSAGE} characters; no lone surrogates."),
        json_schema_extra=_message_schema,
    )
    # a token, never a path: the id goes into the agent's URL (no `.`, `..`, `/` or `%`)
    session_id: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
    activate: bool = Field(
        False,
        strict=True,  # a JSON boolean, as published: not "yes", 1 or "false"
        description=(
            "Start the project first when it is inactive or failed: the stream then begins "
            'with its activation\'s progress, `{"type":"activation","content":{"step",'
            '"message"}}` events, and a failed activation ends it with an `error` event '
            "whose `code` is the failure's reason. Without it such a project answers 409."
        ),
    )


# not a JSON number, `true`, `false` or `null`: the agent reads an environment value as JSON
# first, and a model of 4 would not let it start
MODEL_PATTERN = (
    r"^(?!(?:true|false|null|(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)$)"
    r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}$"
)
MODEL_DESCRIPTION = (
    "The agent's model for this project (e.g. `gpt-4o`, `claude-sonnet-4`), passed to its "
    "pod as GOOSE_MODEL; it takes effect at the project's next activation."
)


def _string_branch(schema: dict[str, Any], rule: Callable[[dict[str, Any]], None]) -> None:
    """Apply a string rule to an optional field's string branch (`anyOf` with null)."""
    for branch in schema.get("anyOf", [schema]):
        if branch.get("type") == "string":
            rule(branch)


def _model_rule(schema: dict[str, Any]) -> None:
    schema.update(minLength=1, maxLength=128, pattern=MODEL_PATTERN)


def _model_schema(schema: dict[str, Any]) -> None:
    """Published, checked by the service (InvalidModel): pydantic's regex engine has no
    look-ahead."""
    _string_branch(schema, _model_rule)


class ProjectIn(NameIn):
    """Body of project create: a name, and optionally the agent's model."""

    model: str | None = Field(None, description=MODEL_DESCRIPTION, json_schema_extra=_model_schema)


class ProjectPatch(BaseModel):
    """Body of `PATCH …/projects/{pid}`: the fields to change, the others left as they are
    (`"model": null` goes back to the agent environment's model)."""

    name: str | None = Field(
        None,
        description="As in PUT; unique per user regardless of case.",
        json_schema_extra=lambda schema: _string_branch(schema, _name_schema),
    )
    keep_running: bool | None = Field(
        None, strict=True, description="True: never stopped for being idle (GOOSEUI_IDLE_TIMEOUT)."
    )
    model: str | None = Field(None, description=MODEL_DESCRIPTION, json_schema_extra=_model_schema)


class SessionOut(BaseModel):
    session_id: str


class ProgressEvent(BaseModel):
    """One event of `GET …/events`: the project's status, and the step that moved it."""

    user_id: str
    project_id: str
    status: Status
    step: str = Field(description="`current` for the first event, then the lifecycle's step.")
    message: str
    reason: str | None = Field(None, description="Why a project failed, e.g. ImagePullFailed.")
    at: datetime


class ChatEvent(BaseModel):
    """One event of a reply: `session` first, then the agent's own events unchanged.

    The agent's types include `message` (`content.content` is a text delta to append),
    `tool_request`, `tool_response`, `thinking`, `error` and `complete`; a client must
    ignore types it does not know. A message sent with `activate` to a stopped project
    begins with the console's `activation` events (`content.step`, `content.message`).
    A failure after the stream started is an `error` event with `content.message` and
    `content.code`.
    """

    model_config = ConfigDict(extra="allow")

    type: str
    content: dict[str, Any]
