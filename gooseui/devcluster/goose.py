"""The simulated `goose api-server` that every Ready pod runs (DESIGN sections 6 and 7).

It is only worth what it refuses: it reads its environment, stores its sessions and answers
exactly as the real server does (FilippTrigub/goose-bbai, `crates/goose-cli/src/commands/
api_server.rs`, 19-route version, and `database.rs`; `/work/shared/GOOSE_API.md`), so that a
console that passes against it works against the real image. Only the model is replaced:
replies come from a deterministic generator instead of an LLM.

Start-up, in the real order (`start()`); a failure writes the real lines through
`Launch.on_log` and raises `AgentExit(1)`, which the kubelet turns into CrashLoopBackOff:
1. `GOOSE_PROVIDER`, then `GOOSE_MODEL`, from the environment, else from
   `$HOME/.config/goose/config.yaml` (`$XDG_CONFIG_HOME` if absolute; HOME defaults to the
   image's `/home/goose`). Missing: "No provider configured. Run 'goose configure' first" /
   "No model configured. Run 'goose configure' first" (anyhow's `Error: …` / `Caused by:`).
   An environment value is read as JSON first, as goose does (`GOOSE_MODEL=4` is a number
   and is refused).
2. The provider is created twice (direct access, then the agent's). The provider must be one
   goose's factory knows (anthropic, aws_bedrock, azure_openai, claude-code, databricks,
   deepseek, gcp_vertex_ai, gemini-cli, google, groq, litellm, ollama, openai, openrouter,
   sagemaker_tgi, snowflake, venice, xai) or the simulator's own **`simulated`** (any model
   name, e.g. `GOOSE_MODEL=simulated-1`); anything else exits with "Failed to create
   provider" / "Unknown provider: X". A real provider needs its credentials as the real one
   does (e.g. `openai` without `OPENAI_API_KEY` exits "Configuration value not found:
   OPENAI_API_KEY"); with them it starts, and the simulated model answers for it (there is
   no network). `GOOSE_LEAD_MODEL` logs the lead/worker line and checks
   `GOOSE_LEAD_PROVIDER` too.
3. Extensions from config.yaml (`extensions:`); known builtins and stdio/sse/http ones load,
   an unknown builtin logs the real warning; a malformed file exits "Failed to load extension
   configuration".
4. `MONGODB_URL`: missing → the four "❌ MongoDB URL is required!" lines and exit 1.
   `MONGODB_DATABASE` defaults to `goose_sessions`. The agent pings MongoDB before it binds
   its port: unreachable (2 s server selection here; 30 s in the real driver) →
   "Failed to initialize MongoDB connection" and exit 1.
5. Then it binds (the port is closed until then) and logs the "Ready" block, which carries
   the values of `OPENAI_API_KEY`, `BLACKBOX_API_KEY` and the full `MONGODB_URL`.
`USER_ID`, `PROJECT_ID` and `PORT` are not read by the server (the deterministic reply
quotes PROJECT_ID/USER_ID for demos); the port is whatever the simulator binds.

Logs: tracing's single-line format (`2025-01-01T12:00:00.123456Z  INFO target: message`,
targets `goose_cli::commands::api_server` / `goose_cli::database`), DEBUG and up as the
real console layer; DEBUG lines that would repeat per stream event or per stored message are
left out. Secrets are logged as the real server logs them (start-up; every health call logs
`MONGODB_URL` again); the console must redact them, the simulator must not. (The real
console layer is tracing's multi-line, coloured "pretty" format.)

Storage: `AgentDatabases` keeps one `pymongo.AsyncMongoClient` per `MONGODB_URL`, shared by
all simulated pods. Collections `sessions` (`{_id, session_id, created_at: RFC 3339 string,
updated_at: string}`) and `messages` (`{_id, session_id, role: "User"|"Assistant", content,
timestamp: string}`) in `MONGODB_DATABASE`, written as the real `database.rs` writes them:
sessions outlive pods, pods with the same URL and database see each other's sessions, other
databases are isolated. `updated_at` is answered as the real server formats it, Rust's
`Debug` of the BSON value: `String("2025-…Z")`.

Routes (all of the source's; axum's rejections: 415 without a JSON content type, 400 bad
JSON, 422 a missing or mistyped field, 413 over 2 MiB, all `text/plain`; unknown paths 404
and wrong methods 405 with empty bodies; CORS `*`):
health (pings MongoDB: 200 `status: ok` with `mongodb_url` in full, 503 `status: error`;
also 503 while the `never-ready` fault or a termination makes the pod unhealthy); sessions
create/list/get/delete; history (roles `User`/`Assistant`, `timestamp: null`); the reply
stream `POST …/messages` (always 200 `text/event-stream`; an unknown session is ONE `error`
event `{"error":"Session not found","message":"Session <id> not found in MongoDB"}` and the
end, no `complete`; no per-session lock); `…/send` (the same reply as one JSON answer);
`…/stream` (provider-level `token` events); `…/export` (markdown); agent status;
extensions and settings (in memory; a mounted config.yaml is read-only, as ConfigMap volumes
are, so writes answer the real 500).

The reply stream: `data: <json>` events, no `event:`/`id:`, an empty comment `:` after
`AgentSettings.keepalive` seconds without an event (axum's keep-alive, 15 s real). The user
message is saved before the reply; the assistant's text is saved once, before `complete`; a
reply cut by a client disconnect is not saved (and its session stays "processing" in the
agent status, as the real one does). Events: `message` deltas `{role: "Assistant", content,
content_type: "text", timestamp, session_id}`; `tool_request` `{id, tool_name, arguments,
content_type, timestamp, session_id}`; `tool_response` `{id, result: {"Ok": [<content>…]} |
{"Err": {code, message}}, is_error, …}`; `complete` `{message: "Response complete",
session_id, storage: "mongodb"}`. Triggers in the message: "tool" → a `developer__shell`
call; "simulate-tool-error" → its result is `Err`; "simulate-error" → `error` `{message:
"Agent processing error", error, session_id}` mid-reply, then (the partial text saved)
`complete`; "simulate-start-failure" → only `error` `{message: "Failed to start agent
processing", …}`; "simulate-unknown" → a `thinking` and an unknown `x_future_event`;
"simulate-compact" → `history_update {message_count, session_id}` and the stored history
replaced by a summary. `GOOSE_MODE` (environment or config, default `auto`): `approve` and
`smart_approve` send `tool_confirmation` for the tool call and then wait forever (the API
has no route to confirm); `chat` makes no tool calls. Fault hooks: `die_after_events`
(the connection drops), `split_chunk_size` (events written in small pieces). Reply streams
are recorded in an `AgentLog` (`started`, `completed`, `client_disconnected`, `died`,
`server_stopped`) for tests and benches.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import yaml
from aiohttp import web
from pymongo import AsyncMongoClient
from pymongo.errors import InvalidName, PyMongoError
from pymongo.server_api import ServerApi
from pymongo.uri_parser import parse_uri

from .faults import Faults, StreamBehaviour
from .process import IMAGE_BINARIES, IMAGE_PATH, AgentExit, Launch
from .settings import AgentSettings

log = logging.getLogger(__name__)

VERSION = "1.8.0"  # CARGO_PKG_VERSION in the health body (the image's goose-cli version)
SIMULATED_PROVIDER = "simulated"
DEFAULT_HOME = "/home/goose"  # the image's HOME, when the environment does not set one
DEFAULT_DATABASE = "goose_sessions"
LOOPBACK_HOSTS = frozenset({"localhost", "::1", "[::1]", "ip6-localhost"})
SERVER_SELECTION_MS = 2000  # the real driver waits 30 s; tests and demos should not
MAX_BODY = 2 * 1024 * 1024  # axum's DefaultBodyLimit
STATUS_RETENTION = 300.0  # agent status entries older than this are dropped (5 minutes)
API = "goose_cli::commands::api_server"
DB = "goose_cli::database"
FACTORY = "goose::providers::factory"
SUMMARY = "Summary of the earlier conversation (compacted by the simulated agent)."
# the provider-level stream's words for the refusals of `process_user_message`
PROVIDER_REFUSALS = {
    "Session not found": "Session not found in MongoDB",
    "Database error": "MongoDB connection error: Failed to query session from MongoDB",
    "Failed to save message": "Failed to save message to MongoDB: "
    "Failed to insert message into MongoDB",
    "Failed to load conversation": "Failed to load conversation from MongoDB: "
    "Failed to create cursor for messages",
}

# goose's provider factory, and what each provider's `from_env` insists on
PROVIDER_SECRETS: dict[str, tuple[str, ...]] = {
    "anthropic": ("ANTHROPIC_API_KEY",),
    "aws_bedrock": (),
    "azure_openai": ("AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_DEPLOYMENT_NAME"),
    "claude-code": (),
    "databricks": ("DATABRICKS_HOST",),
    "deepseek": ("DEEPSEEK_API_KEY",),
    "gcp_vertex_ai": ("GCP_PROJECT_ID",),
    "gemini-cli": (),
    "google": ("GOOGLE_API_KEY",),
    "groq": ("GROQ_API_KEY",),
    "litellm": (),
    "ollama": (),
    "openai": ("OPENAI_API_KEY",),
    "openrouter": ("OPENROUTER_API_KEY",),
    "sagemaker_tgi": ("SAGEMAKER_ENDPOINT_NAME",),
    "snowflake": ("SNOWFLAKE_HOST", "SNOWFLAKE_TOKEN"),
    "venice": ("VENICE_API_KEY",),
    "xai": ("XAI_API_KEY",),
    SIMULATED_PROVIDER: (),
}
BUILTIN_EXTENSIONS = frozenset(
    {"developer", "computercontroller", "memory", "jetbrains", "tutorial", "autovisualiser"}
)
EXTENSION_TYPES = ("builtin", "stdio", "sse", "streamable_http", "frontend", "inline_python")

# the settings the API exposes: (key, description, value type, validation, restart required)
SETTINGS: tuple[tuple[str, str, str, dict[str, Any] | None, bool], ...] = (
    ("GOOSE_MODEL", "Current LLM model for the agent", "string", None, True),
    (
        "GOOSE_TEMPERATURE",
        "Model temperature for response creativity (0.0-2.0)",
        "number",
        {"min": 0.0, "max": 2.0},
        False,
    ),
    (
        "GOOSE_MODE",
        "Agent behavior mode controlling tool usage and permissions",
        "string",
        {"allowed_values": ["auto", "approve", "smart_approve", "chat"]},
        False,
    ),
    (
        "GOOSE_MAX_TURNS",
        "Maximum number of consecutive agent actions without user input",
        "number",
        {"min": 1.0},
        False,
    ),
    (
        "GOOSE_CLI_MIN_PRIORITY",
        "Minimum priority level for displaying tool output (0.0=all, 0.2=medium, 0.8=high)",
        "number",
        {"min": 0.0, "max": 1.0},
        False,
    ),
    (
        "GOOSE_RECIPE_GITHUB_REPO",
        "GitHub repository for Goose recipes (format: owner/repo)",
        "string",
        {"pattern": r"^[a-zA-Z0-9_.-]+/[a-zA-Z0-9_.-]+$"},
        False,
    ),
    (
        "GOOSE_AUTO_COMPACT_THRESHOLD",
        "Token threshold for automatic context compaction",
        "number",
        {"min": 0.0, "max": 1.0},
        False,
    ),
)
SETTING_DEFAULTS: dict[str, Any] = {
    "GOOSE_MODE": "smart_approve",
    "GOOSE_MAX_TURNS": 1000,
    "GOOSE_CLI_MIN_PRIORITY": 0.0,
    "GOOSE_TEMPERATURE": 0.7,
    "GOOSE_AUTO_COMPACT_THRESHOLD": 0.8,
}


# ---------------------------------------------------------------------------- formatting


def _chrono(ns: int, utc: str) -> str:
    """A UTC instant as chrono prints it: fraction digits 0/3/6/9 as needed, then `utc`
    ("Z" for `Debug`/serde, "+00:00" for `to_rfc3339`)."""
    secs, nanos = divmod(ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    if nanos == 0:
        fraction = ""
    elif nanos % 1_000_000 == 0:
        fraction = f".{nanos // 1_000_000:03d}"
    elif nanos % 1000 == 0:
        fraction = f".{nanos // 1000:06d}"
    else:
        fraction = f".{nanos:09d}"
    return text + fraction + utc


def _rust_str(value: str) -> str:
    """A string as Rust's `{:?}` prints it (quoted, escaped)."""
    out = ['"']
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\0":
            out.append("\\0")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{{{ord(ch):x}}}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _env_debug(env: dict[str, str], name: str) -> str:
    """`{:?}` of `std::env::var(name)`: `Ok("…")` or `Err(NotPresent)`."""
    value = env.get(name)
    return "Err(NotPresent)" if value is None else f"Ok({_rust_str(value)})"


def _bson_debug(value: Any) -> str:
    """`{:?}` of a BSON value, as the real server answers `updated_at`."""
    if isinstance(value, str):
        return f"String({_rust_str(value)})"
    if value is None:
        return "Null"
    if hasattr(value, "strftime"):
        return f"DateTime({value:%Y-%m-%d %H:%M:%S}.{value.microsecond // 1000} +00:00:00)"
    if isinstance(value, bool):
        return f"Boolean({'true' if value else 'false'})"
    if isinstance(value, int):
        return f"Int64({value})"
    if isinstance(value, float):
        return f"Double({value})"
    return f"Document({value!r})"


def _serde_kind(value: Any) -> str:
    """How serde names an unexpected JSON value in "invalid type: …" errors."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{'true' if value else 'false'}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value}`"
    if isinstance(value, str):
        return f"string {json.dumps(value, ensure_ascii=False)}"
    if isinstance(value, list):
        return "sequence"
    return "map"


def _system_time(seconds: float) -> dict[str, int]:
    """serde's shape of a `SystemTime`."""
    ns = int(seconds * 1_000_000_000)
    return {"secs_since_epoch": ns // 1_000_000_000, "nanos_since_epoch": ns % 1_000_000_000}


class _Trace:
    """Container output in tracing's format (`<time> <LEVEL> <target>: <message>`)."""

    __slots__ = ("_emit",)

    def __init__(self, emit: Callable[[str], None]) -> None:
        self._emit = emit

    def _line(self, level: str, message: str, target: str) -> None:
        ns = time.time_ns()
        secs, rest = divmod(ns, 1_000_000_000)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{rest // 1000:06d}Z"
        first, *more = message.split("\n")
        self._emit(f"{stamp} {level:>5} {target}: {first}")
        for line in more:
            self._emit(line)

    def debug(self, message: str, target: str = API) -> None:
        self._line("DEBUG", message, target)

    def info(self, message: str, target: str = API) -> None:
        self._line("INFO", message, target)

    def warn(self, message: str, target: str = API) -> None:
        self._line("WARN", message, target)

    def error(self, message: str, target: str = API) -> None:
        self._line("ERROR", message, target)

    def plain(self, text: str) -> None:
        """Lines written outside tracing (Rust's `Error: …` report on stderr)."""
        for line in text.split("\n"):
            self._emit(line)


# `goose api-server` without --host/--port: the same defaults as the fork's `web` command
# (its clap definitions of api-server are not in the stored source; the image's ENTRYPOINT
# passes both, which suggests the defaults do not suit a pod)
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3000
_OPTIONS = ("--port", "--host", "--database-url")
_USAGE = "\n\nUsage: goose api-server [OPTIONS]\n\nFor more information, try '--help'."


@dataclass(frozen=True)
class CommandLine:
    """Where the process listens, from its arguments."""

    host: str
    port: int

    @property
    def loopback_only(self) -> bool:
        """Bound to loopback inside the pod: nothing outside the container reaches it."""
        return self.host in ("127.0.0.1", "localhost", "::1") or self.host.startswith("127.")


def parse_command_line(argv: list[str]) -> CommandLine:
    """The container's command line as the runtime, then clap, would take it.

    An executable the image does not have fails before the process exists (containerd's
    StartError, exit 128); arguments clap refuses exit 2 with clap's message.
    """
    program, *rest = argv
    candidates = [program] if "/" in program else [f"{d}/{program}" for d in IMAGE_PATH]
    if not any(path in IMAGE_BINARIES for path in candidates):
        why = (
            f"stat {program}: no such file or directory"
            if "/" in program
            else "executable file not found in $PATH"
        )
        raise AgentExit(
            128,
            "StartError",
            "failed to create containerd task: failed to create shim task: OCI runtime create "
            "failed: runc create failed: unable to start container process: error during "
            f'container init: exec: "{program}": {why}: unknown',
        )
    if not rest or rest[0] != "api-server":
        found = rest[0] if rest else ""
        raise _ClapError(f"error: unrecognized subcommand '{found}'" if found else "")
    values: dict[str, str] = {}
    args = rest[1:]
    index = 0
    while index < len(args):
        arg = args[index]
        name, eq, inline = arg.partition("=")
        if name not in _OPTIONS:
            raise _ClapError(f"error: unexpected argument '{arg}' found")
        label = f"{name} <{name[2:].upper().replace('-', '_')}>"
        if name in values:
            raise _ClapError(f"error: the argument '{label}' cannot be used multiple times")
        if eq:
            value = inline
        elif index + 1 < len(args):
            index += 1
            value = args[index]
        else:
            raise _ClapError(f"error: a value is required for '{label}' but none was supplied")
        values[name] = value
        index += 1
    port_text = values.get("--port", str(DEFAULT_PORT))
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise _ClapError(
            f"error: invalid value '{port_text}' for '--port <PORT>': "
            + (
                "invalid digit found in string"
                if not port_text.isdigit()
                else f"{port_text} is not in 0..=65535"
            )
        )
    return CommandLine(values.get("--host", DEFAULT_HOST), int(port_text))


class _ClapError(Exception):
    """clap refused the arguments: it prints to stderr and exits 2."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _StartFailure(Exception):
    """`handle_api_server` returned an error: anyhow's context chain, outermost first."""

    def __init__(self, *chain: str) -> None:
        super().__init__(chain[0])
        self.chain = chain

    def report(self) -> str:
        """What Rust prints for `main() -> anyhow::Result` returning this error."""
        head, *causes = self.chain
        if not causes:
            return f"Error: {head}"
        if len(causes) == 1:
            return f"Error: {head}\n\nCaused by:\n    {causes[0]}"
        numbered = "\n".join(f"    {i}: {cause}" for i, cause in enumerate(causes))
        return f"Error: {head}\n\nCaused by:\n{numbered}"


# ---------------------------------------------------------------------------- configuration


class ConfigError(Exception):
    """goose's `ConfigError`; `str()` is its Display."""


def _json_env(value: str) -> Any:
    """goose reads an environment value as JSON first, else as the string itself."""
    try:
        return json.loads(value, parse_constant=_refuse_constant)
    except ValueError:
        return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(name)  # serde_json has no NaN/Infinity


class GooseConfig:
    """`Config::global()`: the environment first, then `config.yaml` (and secrets).

    A config.yaml mounted into the pod (a ConfigMap volume) is read-only, so writes through
    the API fail as they do on the real pod; without one, writes land in the pod's own
    (writable, per-process) file.
    """

    def __init__(self, env: dict[str, str], files: dict[str, str]) -> None:
        self.env = env
        home = env.get("HOME") or DEFAULT_HOME
        xdg = env.get("XDG_CONFIG_HOME", "")
        base = xdg if xdg.startswith("/") else home.rstrip("/") + "/.config"
        self.dir = base.rstrip("/") + "/goose"
        self.path = self.dir + "/config.yaml"
        self.mounted = self.path in files
        self._text = files.get(self.path)
        self._values: dict[str, Any] | None = None if self.mounted else {}
        self._secrets_text = files.get(self.dir + "/secrets.yaml")

    def values(self) -> dict[str, Any]:
        """The file's top-level mapping (`load_values`)."""
        if self._values is None:
            try:
                loaded = yaml.safe_load(self._text or "")
            except yaml.YAMLError as exc:
                raise ConfigError(f"Failed to deserialize value: {exc}") from None
            self._values = loaded if isinstance(loaded, dict) else {}
        return self._values

    def get_param(self, key: str) -> Any:
        """`get_param`: the upper-cased environment variable, then the file."""
        raw = self.env.get(key.upper())
        if raw is not None:
            return _json_env(raw)
        values = self.values()
        if key not in values:
            raise ConfigError(f"Configuration value not found: {key}")
        return values[key]

    def get_string(self, key: str) -> str:
        value = self.get_param(key)
        if not isinstance(value, str):
            raise ConfigError(
                f"Failed to deserialize value: invalid type: {_serde_kind(value)}, "
                "expected a string"
            )
        return value

    def get_secret(self, key: str) -> Any:
        """`get_secret`: the environment, then secrets.yaml (GOOSE_DISABLE_KEYRING)."""
        raw = self.env.get(key.upper())
        if raw is not None:
            return _json_env(raw)
        if "GOOSE_DISABLE_KEYRING" in self.env and self._secrets_text:
            with contextlib.suppress(yaml.YAMLError):
                secrets = yaml.safe_load(self._secrets_text)
                if isinstance(secrets, dict) and key in secrets:
                    return secrets[key]
        raise ConfigError(f"Configuration value not found: {key}")

    def _writable(self) -> dict[str, Any]:
        if self.mounted:
            raise ConfigError("Failed to read config file: Read-only file system (os error 30)")
        return self.values()

    def set_param(self, key: str, value: Any) -> None:
        self._writable()[key] = value

    def delete(self, key: str) -> None:
        self._writable().pop(key, None)

    # extensions (ExtensionConfigManager)

    def extensions(self) -> dict[str, dict[str, Any]]:
        """`ExtensionConfigManager::get_all`, keyed as in the file."""
        try:
            raw = self.get_param("extensions")
        except ConfigError as exc:
            if str(exc).startswith("Configuration value not found"):
                return {}
            raise
        if not isinstance(raw, dict):
            raise ConfigError(
                f"Failed to deserialize value: invalid type: {_serde_kind(raw)}, expected a map"
            )
        for key, entry in raw.items():
            problem = _extension_problem(entry)
            if problem:
                raise ConfigError(f"Failed to deserialize value: extensions.{key}: {problem}")
        return raw

    def set_extension(self, entry: dict[str, Any]) -> None:
        extensions = dict(self.extensions())
        extensions[_extension_key(entry["name"])] = entry
        self.set_param("extensions", extensions)

    def remove_extension(self, key: str) -> None:
        extensions = dict(self.extensions())
        extensions.pop(key, None)
        self.set_param("extensions", extensions)


def _extension_key(name: str) -> str:
    """goose's `name_to_key`: whitespace removed, lower case."""
    return "".join(ch for ch in name if not ch.isspace()).lower()


def _extension_problem(entry: Any) -> str | None:
    """Why an `extensions:` entry would not deserialize into an ExtensionEntry."""
    if not isinstance(entry, dict):
        return f"invalid type: {_serde_kind(entry)}, expected struct ExtensionEntry"
    if not isinstance(entry.get("enabled"), bool):
        return "missing field `enabled`" if "enabled" not in entry else "invalid type for enabled"
    kind = entry.get("type")
    if kind not in EXTENSION_TYPES:
        return f"unknown variant `{kind}`, expected one of {', '.join(EXTENSION_TYPES)}"
    required = {"stdio": ("cmd",), "sse": ("uri",), "streamable_http": ("uri",)}
    required_inline = {"inline_python": ("code",)}
    for field_name in ("name", *required.get(kind, ()), *required_inline.get(kind, ())):
        if not isinstance(entry.get(field_name), str):
            return f"missing field `{field_name}`"
    return None


def _extension_info(entry: dict[str, Any]) -> dict[str, Any]:
    """ExtensionInfo, as `GET /api/v1/extensions` lists it."""
    kind = entry.get("type")
    return {
        "name": entry.get("name"),
        "display_name": entry.get("display_name") if kind == "builtin" else None,
        "type": kind,
        "enabled": entry.get("enabled"),
        "timeout": None if kind == "frontend" else entry.get("timeout"),
        "cmd": entry.get("cmd") if kind == "stdio" else None,
        "args": (entry.get("args") or []) if kind == "stdio" else None,
        "bundled": entry.get("bundled") if kind == "builtin" else None,
        "description": entry.get("instructions" if kind == "frontend" else "description"),
    }


# ---------------------------------------------------------------------------- storage


class DocumentError(Exception):
    """A stored document that the real server could not deserialize."""


_DB_ERRORS = (PyMongoError, DocumentError)


def _rust_db_error(exc: BaseException) -> str:
    """A MongoDB failure worded like the Rust driver's errors."""
    return f"Kind: {exc}, labels: {{}}"


class AgentDatabases:
    """The agents' MongoDB clients, one per `MONGODB_URL`, shared by every simulated pod
    (like the connection pool each real pod holds), closed with the cluster."""

    def __init__(self) -> None:
        self._clients: dict[str, AsyncMongoClient[dict[str, Any]]] = {}
        # a fault: every agent's MongoDB ping fails (health answers 503) while it is set
        self.outage = False

    def client(self, url: str) -> AsyncMongoClient[dict[str, Any]]:
        """The shared client for `url`; raises pymongo's error for a URL it cannot parse."""
        client = self._clients.get(url)
        if client is None:
            client = AsyncMongoClient(
                url,
                serverSelectionTimeoutMS=SERVER_SELECTION_MS,
                connectTimeoutMS=SERVER_SELECTION_MS,
                server_api=ServerApi("1"),  # as the real DatabaseManager sets it
            )
            self._clients[url] = client
        return client

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()


class SessionDatabase:
    """The real `DatabaseManager`: the agent's sessions and messages in MongoDB."""

    def __init__(
        self, client: AsyncMongoClient[dict[str, Any]], url: str, name: str, trace: _Trace
    ) -> None:
        self.client = client
        self.connection_url = url
        self.db_name = name
        self.trace = trace
        self._bad_name: str | None = None
        try:
            database = client[name]
            self.sessions = database["sessions"]
            self.messages = database["messages"]
        except InvalidName as exc:  # the real server starts; every query then fails
            self._bad_name = str(exc)

    @classmethod
    async def connect(
        cls, databases: AgentDatabases, url: str, name: str, trace: _Trace
    ) -> SessionDatabase:
        """`DatabaseManager::new`: parse, then ping `admin` before the server may bind."""
        trace.info(f"🔌 Connecting to MongoDB: {url}", DB)
        trace.info(f"📦 Database: {name}", DB)
        parse_failed = (
            "Failed to initialize MongoDB connection",
            "Failed to parse MongoDB connection URL",
        )
        if url.startswith("mongodb+srv://"):  # the driver resolves SRV records while parsing
            raise _StartFailure(
                *parse_failed,
                "Kind: DNS error: the simulated cluster resolves no SRV records, labels: {}",
            )
        if not url.startswith("mongodb://"):
            raise _StartFailure(
                *parse_failed,
                "Kind: An invalid argument was provided: connection string contains no scheme, "
                "labels: {}",
            )
        try:
            hosts = [host for host, _port in parse_uri(url)["nodelist"]]
        except (PyMongoError, ValueError) as exc:
            raise _StartFailure(*parse_failed, _rust_db_error(exc)) from None
        remote = [h for h in hosts if h not in LOOPBACK_HOSTS and not h.startswith("127.")]
        if remote:  # the simulator talks to loopback only: anything else is unreachable
            raise _StartFailure(
                "Failed to initialize MongoDB connection",
                "Failed to ping MongoDB server",
                "Kind: Server selection timeout: No available servers. Topology: { Type: "
                f"Unknown, Servers: [ {{ Address: {remote[0]}, Type: Unknown, Error: Kind: I/O "
                "error: failed to lookup address information: Name or service not known, "
                "labels: {} } ] }, labels: {}",
            )
        try:
            client = databases.client(url)
        except PyMongoError as exc:
            raise _StartFailure(*parse_failed, _rust_db_error(exc)) from None
        trace.debug("🏓 Testing MongoDB connection...", DB)
        try:
            await client.admin.command("ping")
        except PyMongoError as exc:
            raise _StartFailure(
                "Failed to initialize MongoDB connection",
                "Failed to ping MongoDB server",
                _rust_db_error(exc),
            ) from None
        trace.info("✅ Successfully connected to MongoDB!", DB)
        trace.debug("📊 Database collections initialized", DB)
        return cls(client, url, name, trace)

    def _check(self) -> None:
        if self._bad_name is not None:
            raise DocumentError(self._bad_name)

    async def health_check(self) -> bool:
        self.trace.debug("❤️ Checking MongoDB health...", DB)
        try:
            await self.client.admin.command("ping")
        except PyMongoError as exc:
            self.trace.error(f"❌ MongoDB health check failed: {_rust_db_error(exc)}", DB)
            return False
        self.trace.debug("✅ MongoDB ping successful", DB)
        return True

    async def create_session(self) -> str:
        self._check()
        session_id = str(uuid.uuid4())
        ns = time.time_ns()
        self.trace.debug(f"➕ Creating session: {session_id}", DB)
        await self.sessions.insert_one(
            {
                "_id": session_id,
                "session_id": session_id,
                "created_at": _chrono(ns, "+00:00"),
                "updated_at": _chrono(ns, "Z"),
            }
        )
        self.trace.debug(f"📝 Inserted session with _id: {_rust_str(session_id)}", DB)
        self.trace.info(f"✅ Created session in MongoDB: {session_id}", DB)
        return session_id

    @staticmethod
    def _session_ok(doc: dict[str, Any]) -> dict[str, Any]:
        for key in ("_id", "session_id", "created_at"):
            if not isinstance(doc.get(key), str):
                raise DocumentError(f"Failed to deserialize session document: field `{key}`")
        if "updated_at" not in doc:
            raise DocumentError("Failed to deserialize session document: field `updated_at`")
        return doc

    async def get_session(self, session_id: str) -> dict[str, Any] | None:
        self._check()
        self.trace.debug(f"🔍 Looking up session: {session_id}", DB)
        doc = await self.sessions.find_one({"session_id": session_id})
        if doc is None:
            self.trace.debug(f"❌ Session not found: {session_id}", DB)
            return None
        return self._session_ok(doc)

    async def delete_session(self, session_id: str) -> bool:
        self._check()
        self.trace.info(f"🗑️ Deleting session: {session_id}", DB)
        removed = await self.messages.delete_many({"session_id": session_id})
        self.trace.debug(f"🗑️ Deleted {removed.deleted_count} messages for session {session_id}", DB)
        deleted = (await self.sessions.delete_one({"session_id": session_id})).deleted_count > 0
        if deleted:
            self.trace.info(f"✅ Deleted session: {session_id}", DB)
        else:
            self.trace.warn(f"⚠️ Session not found for deletion: {session_id}", DB)
        return deleted

    async def list_sessions(self) -> list[dict[str, Any]]:
        self._check()
        self.trace.debug("📋 Listing all sessions from MongoDB", DB)
        docs = [
            self._session_ok(doc) async for doc in self.sessions.find({}).sort("created_at", -1)
        ]
        self.trace.info(f"📋 Successfully loaded {len(docs)} sessions from MongoDB", DB)
        return docs

    async def add_message(self, session_id: str, role: str, content: str) -> str:
        self._check()
        message_id = str(uuid.uuid4())
        self.trace.debug(f"💬 Adding message to session {session_id}", DB)
        self.trace.debug(f"💬 Message role: {role}, content length: {len(content)}", DB)
        await self.messages.insert_one(
            {
                "_id": message_id,
                "session_id": session_id,
                "role": role,
                "content": content,
                "timestamp": _chrono(time.time_ns(), "Z"),
            }
        )
        await self.sessions.update_one(
            {"session_id": session_id}, {"$set": {"updated_at": _chrono(time.time_ns(), "Z")}}
        )
        self.trace.debug(f"✅ Added message {message_id} to session {session_id}", DB)
        return message_id

    async def get_conversation(self, session_id: str) -> list[tuple[str, str]]:
        """(role, text) in timestamp order; an unknown role reads as User, as goose does."""
        self._check()
        self.trace.debug(f"📖 Loading conversation for session: {session_id}", DB)
        messages: list[tuple[str, str]] = []
        async for doc in self.messages.find({"session_id": session_id}).sort("timestamp", 1):
            for key in ("_id", "session_id", "role", "content", "timestamp"):
                if not isinstance(doc.get(key), str):
                    raise DocumentError(f"Failed to deserialize message document: field `{key}`")
            role = doc["role"] if doc["role"] in ("User", "Assistant") else "User"
            messages.append((role, doc["content"]))
        self.trace.info(f"📖 Loaded {len(messages)} messages for session {session_id}", DB)
        return messages

    async def message_count(self, session_id: str) -> int:
        self._check()
        return await self.messages.count_documents({"session_id": session_id})

    async def update_conversation(self, session_id: str, messages: list[tuple[str, str]]) -> None:
        self._check()
        self.trace.info(f"🔄 Updating conversation for session: {session_id}", DB)
        await self.messages.delete_many({"session_id": session_id})
        for role, content in messages:
            await self.add_message(session_id, role, content)
        self.trace.info(
            f"✅ Updated conversation for session {session_id} with {len(messages)} messages", DB
        )


# ---------------------------------------------------------------------------- stream records


@dataclass(frozen=True)
class StreamRecord:
    """What happened to one reply (for tests and diagnostics)."""

    kind: str  # "started" | "completed" | "client_disconnected" | "died" | "server_stopped"
    namespace: str
    deployment: str
    pod: str
    session_id: str
    events_sent: int
    at: float  # time.monotonic()


class AgentLog:
    """Records of reply streams, with a waiter for tests."""

    def __init__(self) -> None:
        self.records: list[StreamRecord] = []
        self._changed = asyncio.Event()

    def add(self, record: StreamRecord) -> None:
        self.records.append(record)
        self._changed.set()
        self._changed = asyncio.Event()

    def of_kind(self, kind: str) -> list[StreamRecord]:
        return [r for r in self.records if r.kind == kind]

    async def wait_for(self, kind: str, start: int = 0, within: float = 5.0) -> StreamRecord | None:
        """The first record of `kind` at index >= `start`, waiting up to `within` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            for record in self.records[start:]:
                if record.kind == kind:
                    return record
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)


# ---------------------------------------------------------------------------- the model


# What a model writes when asked for structure: the chat's rendering (and its sanitising of
# the raw HTML and the image a model may emit) can be seen in a demo and tested
RICH_REPLY = """## Plan for {project}

1. Read the repository
2. Write the tests first
3. Make them pass

```python
def greet(name: str) -> str:
    return f"<b>{{name}}</b>"
```

| step | status |
|------|--------|
| tests | done |
| code | in progress |

### Checklist

- item 1: read the issue
- item 2: find the module
- item 3: write a failing test
- item 4: make it pass
- item 5: run the linter
- item 6: run the whole suite
- item 7: measure
- item 8: write the note
- item 9: review the diff
- item 10: commit
- item 11: push
- item 12: close the issue

<img src="https://example.invalid/pixel.png" onerror="alert(1)"> raw HTML, as models emit it

![a chart](https://example.invalid/chart.png)
"""


def _reply_words(message: str, env: dict[str, str], settings: AgentSettings) -> list[str]:
    """The deterministic reply, as the deltas a streaming provider would send."""
    if settings.reply_deltas is not None:
        return [f"w{i} " for i in range(settings.reply_deltas)]
    if "markdown" in message.lower():
        text = RICH_REPLY.format(project=env.get("PROJECT_ID", "?"))
        return [line + "\n" for line in text.split("\n")]
    quoted = message.strip().replace("\n", " ")
    if len(quoted) > 80:
        quoted = quoted[:77] + "..."
    text = (
        f"Hello from the simulated Goose agent of project {env.get('PROJECT_ID', '?')} "
        f'(user {env.get("USER_ID", "?")}). You wrote: "{quoted}". '
        "This answer is streamed in small pieces so that you can watch it arrive."
    )
    words = [w + " " for w in text.split(" ")]
    words[-1] = words[-1].rstrip()
    return words


def reply_events(
    message: str,
    session_id: str,
    env: dict[str, str],
    settings: AgentSettings,
    mode: str = "auto",
) -> Iterator[tuple[dict[str, Any], float]]:
    """The agent-level stream's events as (payload, pause before it) pairs.

    A normal reply ends with `complete`; a start failure is one `error` and nothing else;
    in an approval `mode` the reply stops at `tool_confirmation` (the server then waits).
    """
    now = int(time.time())
    lower = message.lower()
    if "simulate-start-failure" in lower:
        yield (
            {
                "type": "error",
                "content": {
                    "message": "Failed to start agent processing",
                    "error": "simulated start failure (simulate-start-failure)",
                    "session_id": session_id,
                },
            },
            0.0,
        )
        return
    words = _reply_words(message, env, settings)
    wants_tool = "tool" in lower and mode != "chat"
    wants_error = "simulate-error" in lower
    if "simulate-compact" in lower:
        yield (
            {"type": "history_update", "content": {"message_count": 2, "session_id": session_id}},
            0.0,
        )
    if "simulate-unknown" in lower:
        # event types a client does not know yet must pass through a relay untouched
        yield (
            {
                "type": "thinking",
                "content": {
                    "message": "considering the request",
                    "signature": "simulated",
                    "content_type": "thinking",
                    "timestamp": now,
                    "session_id": session_id,
                },
            },
            0.0,
        )
        yield ({"type": "x_future_event", "content": {"note": "clients must ignore this"}}, 0.0)
    tool_at = min(3, len(words))
    for index, word in enumerate(words):
        if wants_tool and index == tool_at:
            call_id = f"call_{session_id[:8]}_{index}"
            arguments = {"command": "echo simulated tool"}
            yield (
                {
                    "type": "tool_request",
                    "content": {
                        "id": call_id,
                        "tool_name": "developer__shell",
                        "arguments": arguments,
                        "content_type": "tool_request",
                        "timestamp": now,
                        "session_id": session_id,
                    },
                },
                settings.delta_delay,
            )
            if mode in ("approve", "smart_approve"):
                yield (
                    {
                        "type": "tool_confirmation",
                        "content": {
                            "id": call_id,
                            "tool_name": "developer__shell",
                            "arguments": arguments,
                            "needs_confirmation": True,
                            "content_type": "tool_confirmation",
                            "timestamp": now,
                            "session_id": session_id,
                        },
                    },
                    0.0,
                )
                return
            if "simulate-tool-error" in lower:
                result: dict[str, Any] = {
                    "Err": {"code": -32603, "message": "simulated tool failure"}
                }
            else:
                output = "simulated tool\n"
                result = {
                    "Ok": [
                        {
                            "type": "text",
                            "text": output,
                            "annotations": {"audience": ["assistant"]},
                        },
                        {
                            "type": "text",
                            "text": output,
                            "annotations": {"audience": ["user"], "priority": 0.0},
                        },
                    ]
                }
            yield (
                {
                    "type": "tool_response",
                    "content": {
                        "id": call_id,
                        "result": result,
                        "is_error": "Err" in result,
                        "content_type": "tool_response",
                        "timestamp": now,
                        "session_id": session_id,
                    },
                },
                settings.tool_delay,
            )
        if wants_error and index == len(words) // 2:
            yield (
                {
                    "type": "error",
                    "content": {
                        "message": "Agent processing error",
                        "error": "Request failed: simulated provider failure (simulate-error)",
                        "session_id": session_id,
                    },
                },
                settings.delta_delay,
            )
            break
        yield (
            {
                "type": "message",
                "content": {
                    "role": "Assistant",
                    "content": word,
                    "content_type": "text",
                    "timestamp": now,
                    "session_id": session_id,
                },
            },
            settings.delta_delay if index else 0.0,
        )
    yield (
        {
            "type": "complete",
            "content": {
                "message": "Response complete",
                "session_id": session_id,
                "storage": "mongodb",
            },
        },
        0.0,
    )


def provider_tokens(
    message: str, session_id: str, env: dict[str, str], settings: AgentSettings
) -> Iterator[tuple[dict[str, Any], float]]:
    """The provider-level stream (`/stream`): tokens with the text so far, no tools."""
    now = int(time.time())
    words = _reply_words(message, env, settings)
    wants_error = "simulate-error" in message.lower()
    accumulated = ""

    def event(kind: str, content: str) -> dict[str, Any]:
        return {
            "type": kind,
            "content": content,
            "accumulated": accumulated,
            "timestamp": now,
            "session_id": session_id,
        }

    for index, word in enumerate(words):
        if wants_error and index == len(words) // 2:
            yield (event("error", "Provider streaming error: simulated provider failure"), 0.0)
            break
        accumulated += word
        yield (event("token", word), settings.delta_delay if index else 0.0)
    yield (event("complete", "Token streaming complete"), 0.0)


# ---------------------------------------------------------------------------- HTTP helpers


def _dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _json(body: Any, status: int = 200) -> web.Response:
    """axum's `Json`: compact JSON, `application/json` (no charset)."""
    return web.Response(body=_dumps(body), status=status, content_type="application/json")


def _text(text: str, status: int) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/plain", charset="utf-8")


def _encode(payload: dict[str, Any]) -> bytes:
    return b"data: " + _dumps(payload) + b"\n\n"


def _json_content_type(value: str | None) -> bool:
    """axum's check: `application/json` or `application/*+json`."""
    if not value:
        return False
    essence = value.split(";", 1)[0].strip().lower()
    kind, _, subtype = essence.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


def _position(text: str) -> str:
    lines = text.split("\n")
    return f"at line {len(lines)} column {len(lines[-1])}"


# A request body's fields: name -> (required, check, what serde expects)
Fields = dict[str, tuple[bool, Callable[[Any], bool], str]]


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _is_u64(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _is_str_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def _is_any(_value: Any) -> bool:
    return True


def _is_map(value: Any) -> bool:
    return isinstance(value, dict)


MESSAGE_REQUEST: Fields = {"message": (True, _is_str, "a string")}
EXTENSION_CREATE: Fields = {
    "name": (True, _is_str, "a string"),
    "display_name": (False, _is_str, "a string"),
    "type": (True, _is_str, "a string"),
    "timeout": (False, _is_u64, "u64"),
    "cmd": (False, _is_str, "a string"),
    "args": (False, _is_str_list, "a sequence"),
    "bundled": (False, _is_bool, "a boolean"),
    "description": (False, _is_str, "a string"),
    "envs": (False, _is_str_map, "a map"),
    "env_keys": (False, _is_str_list, "a sequence"),
    "uri": (False, _is_str, "a string"),
    "headers": (False, _is_str_map, "a map"),
    "python_code": (False, _is_str, "a string"),
}
EXTENSION_TOGGLE: Fields = {"enabled": (True, _is_bool, "a boolean")}
SETTING_UPDATE: Fields = {"value": (True, _is_any, "any valid JSON value")}
BULK_SETTINGS: Fields = {"settings": (True, _is_map, "a map")}


async def _json_body(
    request: web.Request, struct: str, fields: Fields
) -> dict[str, Any] | web.Response:
    """axum's `Json<T>` extractor: the body, or the rejection it would answer."""
    if not _json_content_type(request.headers.get("Content-Type")):
        return _text("Expected request with `Content-Type: application/json`", 415)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _text("Failed to buffer the request body: length limit exceeded", 413)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return _text("Failed to parse the request body as JSON: invalid unicode code point", 400)
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:
        line = getattr(exc, "lineno", 1)
        column = getattr(exc, "colno", 1)
        what = "EOF while parsing a value" if not text.strip() else "expected value"
        return _text(
            f"Failed to parse the request body as JSON: {what} at line {line} column {column}",
            400,
        )
    prefix = "Failed to deserialize the JSON body into the target type: "
    where = _position(text)
    if not isinstance(value, dict):
        return _text(
            f"{prefix}invalid type: {_serde_kind(value)}, expected struct {struct} {where}", 422
        )
    for name, (required, check, expected) in fields.items():
        if name not in value:
            if required:
                return _text(f"{prefix}missing field `{name}` {where}", 422)
            continue
        item = value[name]
        if item is None and not required:
            continue  # Option<T> accepts null
        if not check(item):
            return _text(
                f"{prefix}{name}: invalid type: {_serde_kind(item)}, expected {expected} {where}",
                422,
            )
    return value


async def _forever() -> None:
    """What an agent waiting for a tool confirmation does: nothing, until cancelled."""
    await asyncio.Event().wait()


class _SseWriter:
    """Writes events and keep-alives to one response without interleaving them.

    The keep-alive is axum's: an empty comment after `interval` seconds without an event.
    """

    def __init__(self, response: web.StreamResponse, behaviour: StreamBehaviour) -> None:
        self.response = response
        self.behaviour = behaviour
        self.lock = asyncio.Lock()
        self.loop = asyncio.get_running_loop()
        self.last = self.loop.time()

    async def send(self, data: bytes) -> None:
        async with self.lock:
            size = self.behaviour.split_chunk_size
            if not size:
                await self.response.write(data)
            else:
                for start in range(0, len(data), size):
                    await self.response.write(data[start : start + size])
                    if start + size < len(data):
                        await asyncio.sleep(self.behaviour.split_pause)
            self.last = self.loop.time()

    async def keepalive(self, interval: float) -> None:
        while True:
            wait = self.last + interval - self.loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            async with self.lock:
                try:
                    await self.response.write(b":\n\n")
                except ConnectionResetError:
                    return  # the reply's own writes notice and record the disconnect
                self.last = self.loop.time()


# ---------------------------------------------------------------------------- the server


class GooseServer:
    """One pod's `goose api-server` on its own loopback port."""

    def __init__(
        self,
        launch: Launch,
        databases: AgentDatabases,
        settings: Callable[[], AgentSettings],
        faults: Faults,
        agent_log: AgentLog,
        healthy: bool = True,
    ) -> None:
        self.launch = launch
        self.pod = launch.pod
        self.project = launch.project
        self.env = launch.env
        self.databases = databases
        self.settings = settings
        self.faults = faults
        self.agent_log = agent_log
        self.healthy = healthy  # False: health answers 503 (never-ready fault, termination)
        self.on_log = launch.on_log or (lambda _line: None)
        self.trace = _Trace(self.on_log)
        self.config = GooseConfig(self.env, launch.files)
        self.db: SessionDatabase | None = None
        self.provider = ""
        self.model = ""
        self.port = 0  # the loopback port the simulator serves it on
        # where the process believes it listens (its --host/--port); None: as the pod declares
        self.command_line: CommandLine | None = None
        self.started_at = 0.0
        self.processed = 0
        self.statuses: dict[str, dict[str, Any]] = {}
        self._runner: web.AppRunner | None = None
        self._streams: set[asyncio.Task[Any]] = set()
        self._stopping = False

    # ------------------------------------------------------------------ start-up

    def reachable_at(self, port: int | None) -> bool:
        """Whether a connection from outside the container to `port` reaches this process.

        The simulator serves every agent on a loopback port of its own; this says whether
        the pod's port is the one the process listens on, on an address others can reach.
        """
        listening = self.command_line
        if listening is None or port is None:
            return True
        return listening.port == port and not listening.loopback_only

    async def start(self, host: str = "127.0.0.1") -> int:
        """Start as the real process does; raises `AgentExit` where it would exit."""
        if self.launch.argv:
            try:
                self.command_line = parse_command_line(self.launch.argv)
            except _ClapError as refused:
                # clap's usage error (or, with no subcommand, its help) goes to stderr
                self.trace.plain(
                    (refused.message + _USAGE) if refused.message else "Usage: goose [COMMAND]"
                )
                raise AgentExit(2) from None
        try:
            await self._initialise()
        except _StartFailure as failure:
            self.trace.plain(failure.report())
            raise AgentExit(1) from None  # the reason is in the log (terminationMessage: File)
        app = web.Application(middlewares=[self._routing_errors], client_max_size=MAX_BODY + 1)
        app.on_response_prepare.append(self._cors_headers)
        routes = [
            ("GET", "/api/v1/health", self._health),
            ("POST", "/api/v1/sessions", self._create_session),
            ("GET", "/api/v1/sessions", self._list_sessions),
            ("GET", "/api/v1/sessions/{sid}", self._get_session),
            ("DELETE", "/api/v1/sessions/{sid}", self._delete_session),
            ("POST", "/api/v1/sessions/{sid}/messages", self._reply),
            ("GET", "/api/v1/sessions/{sid}/messages", self._history),
            ("POST", "/api/v1/sessions/{sid}/send", self._send),
            ("POST", "/api/v1/sessions/{sid}/stream", self._provider_stream),
            ("GET", "/api/v1/sessions/{sid}/export", self._export),
            ("GET", "/api/v1/extensions", self._list_extensions),
            ("POST", "/api/v1/extensions", self._create_extension),
            ("PUT", "/api/v1/extensions/{name}/toggle", self._toggle_extension),
            ("DELETE", "/api/v1/extensions/{name}", self._remove_extension),
            ("GET", "/api/v1/settings", self._list_settings),
            ("PUT", "/api/v1/settings", self._bulk_settings),
            ("GET", "/api/v1/settings/{key}", self._get_setting),
            ("PUT", "/api/v1/settings/{key}", self._update_setting),
            ("DELETE", "/api/v1/settings/{key}", self._reset_setting),
            ("GET", "/api/v1/agent/status", self._agent_status),
        ]
        for method, path, handler in routes:
            if method == "GET":  # axum's `get` answers HEAD too
                app.router.add_get(path, handler)
            else:
                app.router.add_route(method, path, handler)
        self._runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=0.2
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        listening = self.command_line
        self._log_ready(
            f"{listening.host}:{listening.port}" if listening else f"{host}:{self.port}"
        )
        return self.port

    async def _initialise(self) -> None:
        """`handle_api_server` up to the bind, in its order."""
        trace, env = self.trace, self.env
        trace.info("🚀 Starting Goose API Server initialization...")
        trace.debug("🔍 Environment Variables:")
        for name in ("GOOSE_AUTH_BYPASS", "MONGODB_URL", "MONGODB_DATABASE", "RUST_LOG"):
            trace.debug(f"{name}: {_env_debug(env, name)}")
        trace.debug("Database URL arg: None")
        trace.info("🔧 Loading Goose configuration...")
        try:
            self.provider = self.config.get_string("GOOSE_PROVIDER")
        except ConfigError as exc:
            raise _StartFailure(
                "No provider configured. Run 'goose configure' first", str(exc)
            ) from None
        try:
            self.model = self.config.get_string("GOOSE_MODEL")
        except ConfigError as exc:
            raise _StartFailure(
                "No model configured. Run 'goose configure' first", str(exc)
            ) from None
        trace.info(f"🤖 Using provider: {self.provider} with model: {self.model}")
        trace.info("🔌 Creating direct provider access...")
        self._create_provider("Failed to create provider")
        trace.info("🌊 Provider streaming support: true")
        trace.info("🔌 Setting up Goose agent...")
        self._create_provider("Failed to create agent provider")
        trace.debug("🧩 Loading extensions...")
        try:
            extensions = self.config.extensions()
        except ConfigError as exc:
            raise _StartFailure("Failed to load extension configuration", str(exc)) from None
        loaded = 0
        for entry in extensions.values():
            if not entry.get("enabled"):
                continue
            name = entry["name"]
            if entry["type"] == "builtin" and _extension_key(name) not in BUILTIN_EXTENSIONS:
                trace.warn(
                    f"⚠️ Failed to load extension {name}: Failed to start the MCP server from "
                    f"configuration `Builtin({name})`: unknown builtin extension"
                )
                continue
            loaded += 1
            trace.debug(f"✅ Loaded extension: {name}")
        trace.info(f"🧩 Loaded {loaded} extensions")
        url = env.get("MONGODB_URL")
        if url is None:
            trace.error("❌ MongoDB URL is required!")
            trace.error("Provide via --database-url or MONGODB_URL environment variable")
            trace.error("Example: --database-url mongodb://localhost:27017")
            trace.error("This API server requires MongoDB - no local storage fallback")
            raise AgentExit(1)  # std::process::exit(1): no anyhow report
        name = env.get("MONGODB_DATABASE", DEFAULT_DATABASE)
        trace.info("📊 Initializing MongoDB connection...")
        self.db = await SessionDatabase.connect(self.databases, url, name, trace)
        self.started_at = time.time()
        trace.info("🌍 Setting up API routes...")

    def _create_provider(self, context: str) -> None:
        """`goose::providers::create`: a known provider with its credentials."""
        names = [self.provider]
        with contextlib.suppress(ConfigError):
            lead_model = self.config.get_param("GOOSE_LEAD_MODEL")
            self.trace.info("Creating lead/worker provider from environment variables", FACTORY)
            if not isinstance(lead_model, str):
                raise _StartFailure(context, "Configuration value not found: GOOSE_LEAD_MODEL")
            lead = self.provider
            with contextlib.suppress(ConfigError):
                lead = self.config.get_string("GOOSE_LEAD_PROVIDER")
            names.insert(0, lead)
        for name in names:
            if name not in PROVIDER_SECRETS:
                raise _StartFailure(context, f"Unknown provider: {name}")
            for secret in PROVIDER_SECRETS[name]:
                try:
                    self.config.get_secret(secret)
                except ConfigError as exc:
                    raise _StartFailure(context, str(exc)) from None

    def _log_ready(self, address: str) -> None:
        trace, env = self.trace, self.env
        assert self.db is not None
        trace.info("✨ Goose API Server Ready!")
        trace.info(f"🌐 Listening on: http://{address}")
        trace.info(f"📊 Database: {self.db.db_name} ({self.db.connection_url})")
        trace.info("🔧 Storage: MongoDB-only (no local fallback)")
        for name in ("OPENAI_API_KEY", "BLACKBOX_API_KEY", "OPENAI_HOST", "OPENAI_BASE_PATH"):
            trace.info(f"{name}: {env.get(name, 'unset')}")
        trace.info(f"GOOSE_MODEL: {env.get('GOOSE_MODEL', 'unset')}")
        trace.info("📡 Endpoints: 19 REST API endpoints available")
        trace.info("🌊 Streaming modes: Agent-level (/messages) + Provider-level (/stream)")

    async def stop(self) -> None:
        """Stop serving; open reply streams are cut as when the container exits."""
        self._stopping = True
        for task in list(self._streams):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------------ HTTP plumbing

    @web.middleware
    async def _routing_errors(
        self, request: web.Request, handler: Callable[..., Any]
    ) -> web.StreamResponse:
        """axum's router: CORS preflights, and empty 404/405 answers."""
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            return web.Response(
                status=200,
                headers={"Access-Control-Allow-Methods": "*", "Access-Control-Allow-Headers": "*"},
            )
        try:
            response: web.StreamResponse = await handler(request)
        except web.HTTPMethodNotAllowed as exc:
            return web.Response(
                status=405, headers={"Allow": ",".join(sorted(exc.allowed_methods))}
            )
        except web.HTTPNotFound:
            return web.Response(status=404)
        return response

    @staticmethod
    async def _cors_headers(_request: web.Request, response: web.StreamResponse) -> None:
        """tower-http's `CorsLayer` with `Any` origin, methods and headers."""
        response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["Vary"] = (
            "origin, access-control-request-method, access-control-request-headers"
        )

    @property
    def _db(self) -> SessionDatabase:
        assert self.db is not None, "start() first"
        return self.db

    def _set_status(self, session_id: str, endpoint: str, status: str) -> None:
        """`set_agent_status`: the per-process table behind `/api/v1/agent/status`."""
        now = time.time()
        previous = self.statuses.get(session_id)
        self.statuses[session_id] = {
            "session_id": session_id,
            "endpoint_type": endpoint,
            "status": status,
            "start_time": now
            if status == "processing" or previous is None
            else previous["start_time"],
            "last_update": now,
        }
        if status == "completed":
            self.processed += 1

    def _record(self, kind: str, session_id: str, sent: int) -> None:
        self.agent_log.add(
            StreamRecord(
                kind, self.project[0], self.project[1], self.pod, session_id, sent, time.monotonic()
            )
        )

    def _mode(self) -> str:
        """GOOSE_MODE as the agent reads it at each reply (unknown values act as auto)."""
        try:
            mode = self.config.get_string("GOOSE_MODE")
        except ConfigError:
            return "auto"
        return mode if mode in ("auto", "approve", "smart_approve", "chat") else "auto"

    # ------------------------------------------------------------------ health and status

    async def _health(self, request: web.Request) -> web.Response:
        trace = self.trace
        trace.debug("❤️ Health check requested")
        if self.databases.outage:
            self.trace.error("❌ MongoDB health check failed: server selection timeout", DB)
        connected = self.healthy and not self.databases.outage and await self._db.health_check()
        body = {
            "status": "ok" if connected else "error",
            "timestamp": str(int(time.time())),
            "version": VERSION,
            "database_connected": connected,
            "storage_type": "mongodb",
            "mongodb_url": self._db.connection_url,
            "mongodb_database": self._db.db_name,
            "streaming_modes": ["agent-events", "provider-tokens"],
            "provider_streaming_support": True,
        }
        if connected:
            trace.debug("✅ Health check: OK")
        else:
            trace.error("❌ Health check: MongoDB connection failed")
        trace.info("🔍 Environment Variables Debug:")
        for name in (
            "GOOSE_PROVIDER",
            "OPENAI_HOST",
            "OPENAI_BASE_PATH",
            "GOOSE_LEAD_MODEL",
            "GOOSE_AUTH_BYPASS",
            "MONGODB_URL",
        ):
            trace.info(f"{name}: {_env_debug(self.env, name)}")
        return _json(body, 200 if connected else 503)

    async def _agent_status(self, request: web.Request) -> web.Response:
        self.trace.info("📊 Getting agent status...")
        now = time.time()
        self.statuses = {
            sid: s for sid, s in self.statuses.items() if now - s["last_update"] < STATUS_RETENTION
        }
        active = sum(1 for s in self.statuses.values() if s["status"] == "processing")
        self.trace.info(f"✅ Agent status: {active} active, {self.processed} total processed")
        return _json(
            {
                "overall_status": "processing" if active else "idle",
                "active_sessions": active,
                "total_processed": self.processed,
                "uptime_seconds": int(now - self.started_at),
                "sessions": [
                    {
                        **s,
                        "start_time": _system_time(s["start_time"]),
                        "last_update": _system_time(s["last_update"]),
                    }
                    for s in self.statuses.values()
                ],
            }
        )

    # ------------------------------------------------------------------ sessions

    def _describe(self, doc: dict[str, Any], count: int) -> dict[str, Any]:
        return {
            "session_id": doc["session_id"],
            "created_at": doc["created_at"],
            "updated_at": _bson_debug(doc["updated_at"]),
            "message_count": count,
        }

    async def _count(self, session_id: str) -> int:
        try:
            return await self._db.message_count(session_id)
        except _DB_ERRORS as exc:
            self.trace.warn(f"⚠️ Failed to get message count: {_rust_db_error(exc)}")
            return 0

    async def _create_session(self, request: web.Request) -> web.Response:
        self.trace.info("➕ Creating new session...")
        try:
            session_id = await self._db.create_session()
        except _DB_ERRORS as exc:
            self.trace.error(f"❌ Failed to create session in MongoDB: {_rust_db_error(exc)}")
            return _json({"session_id": "error"}, 500)
        self.trace.info(f"✅ Session created successfully: {session_id}")
        return _json({"session_id": session_id}, 201)

    async def _list_sessions(self, request: web.Request) -> web.Response:
        self.trace.info("📋 Listing sessions from MongoDB...")
        try:
            docs = await self._db.list_sessions()
        except _DB_ERRORS as exc:
            self.trace.error(f"❌ Failed to list sessions from MongoDB: {_rust_db_error(exc)}")
            return _json({"sessions": [], "total": 0})
        sessions = [self._describe(doc, await self._count(doc["session_id"])) for doc in docs]
        self.trace.info(f"✅ Listed {len(sessions)} sessions from MongoDB")
        return _json({"sessions": sessions, "total": len(sessions)})

    async def _get_session(self, request: web.Request) -> web.Response:
        sid = request.match_info["sid"]
        self.trace.info(f"🔍 Getting session details: {sid}")
        empty = {"created_at": "", "updated_at": "", "message_count": 0}
        try:
            doc = await self._db.get_session(sid)
        except _DB_ERRORS as exc:
            self.trace.error(
                f"❌ Failed to query session {sid} from MongoDB: {_rust_db_error(exc)}"
            )
            return _json({"session_id": "error", **empty}, 500)
        if doc is None:
            self.trace.debug(f"❌ Session not found in MongoDB: {sid}")
            return _json({"session_id": "not_found", **empty}, 404)
        return _json(self._describe(doc, await self._count(sid)))

    async def _delete_session(self, request: web.Request) -> web.Response:
        sid = request.match_info["sid"]
        self.trace.info(f"🗑️ Deleting session: {sid}")
        try:
            deleted = await self._db.delete_session(sid)
        except _DB_ERRORS as exc:
            self.trace.error(
                f"❌ Failed to delete session {sid} from MongoDB: {_rust_db_error(exc)}"
            )
            return web.Response(status=500)
        if deleted:
            self.trace.info(f"✅ Successfully deleted session: {sid}")
            return web.Response(status=204)
        self.trace.debug(f"🔍 Session not found for deletion: {sid}")
        return web.Response(status=404)

    async def _history(self, request: web.Request) -> web.Response:
        sid = request.match_info["sid"]
        self.trace.info(f"📋 Getting messages for session: {sid}")
        empty = {"session_id": sid, "messages": [], "total_count": 0}
        try:
            if await self._db.get_session(sid) is None:
                return _json(empty, 404)
            conversation = await self._db.get_conversation(sid)
        except _DB_ERRORS as exc:
            self.trace.error(
                f"❌ Failed to query session {sid} from MongoDB: {_rust_db_error(exc)}"
            )
            return _json(empty, 500)
        messages = [
            {"role": role, "content": content, "timestamp": None, "message_index": index}
            for index, (role, content) in enumerate(conversation)
        ]
        self.trace.info(f"✅ Retrieved {len(messages)} messages for session {sid}")
        return _json({"session_id": sid, "messages": messages, "total_count": len(messages)})

    async def _export(self, request: web.Request) -> web.Response:
        sid = request.match_info["sid"]
        self.trace.info(f"📤 Exporting session: {sid}")
        try:
            conversation = await self._db.get_conversation(sid)
        except _DB_ERRORS as exc:
            self.trace.error(
                f"❌ Failed to export session {sid} from MongoDB: {_rust_db_error(exc)}"
            )
            return _text("Failed to export session from MongoDB", 500)
        parts = [
            f"# Session Export: {sid}\n\n",
            f"**Database:** {self._db.db_name}\n",
            f"**Exported:** {_chrono(time.time_ns(), '+00:00')}\n\n",
        ]
        for index, (role, content) in enumerate(conversation):
            parts.append(f"## Message {index + 1} - {role}\n\n{content}\n\n---\n\n")
        self.trace.info(f"✅ Exported session {sid} ({len(conversation)} messages)")
        return _text("".join(parts), 200)

    # ------------------------------------------------------------------ replies

    async def _prepare_reply(self, sid: str, message: str) -> tuple[int, dict[str, Any]] | None:
        """`process_user_message`: the session must exist; the user message is saved and
        the history loaded before the agent starts. An error is (status, JSON body)."""
        try:
            found = await self._db.get_session(sid)
        except _DB_ERRORS as exc:
            self.trace.error(f"❌ Failed to check session {sid} in MongoDB: {_rust_db_error(exc)}")
            return 500, {
                "error": "Database error",
                "message": "Failed to query session from MongoDB",
            }
        if found is None:
            self.trace.warn(f"❌ Session not found in MongoDB: {sid}")
            return 404, {
                "error": "Session not found",
                "message": f"Session {sid} not found in MongoDB",
            }
        try:
            await self._db.add_message(sid, "User", message)
        except _DB_ERRORS as exc:
            self.trace.error(f"❌ Failed to save user message to MongoDB: {_rust_db_error(exc)}")
            return 500, {
                "error": "Failed to save message",
                "message": "Could not save user message to database",
            }
        try:
            conversation = await self._db.get_conversation(sid)
        except _DB_ERRORS as exc:
            self.trace.error(f"❌ Failed to load conversation from MongoDB: {_rust_db_error(exc)}")
            return 500, {
                "error": "Failed to load conversation",
                "message": "Could not load conversation history from database",
            }
        self.trace.info(f"✅ Loaded conversation with {len(conversation)} messages from MongoDB")
        return None

    async def _save_reply(self, sid: str, text: str) -> bool:
        if not text:
            return True
        try:
            await self._db.add_message(sid, "Assistant", text)
        except _DB_ERRORS as exc:
            self.trace.error(
                f"❌ Failed to save assistant message to MongoDB: {_rust_db_error(exc)}"
            )
            return False
        return True

    async def _compact(self, sid: str, message: str) -> None:
        """The agent replaced the history (context compaction): the database follows."""
        self.trace.info("🔄 Agent replaced conversation history with 2 messages")
        try:
            await self._db.update_conversation(sid, [("Assistant", SUMMARY), ("User", message)])
        except _DB_ERRORS as exc:
            self.trace.error(f"❌ Failed to update conversation in MongoDB: {_rust_db_error(exc)}")

    async def _single_event(
        self, request: web.Request, payload: dict[str, Any]
    ) -> web.StreamResponse:
        """An early failure: still 200 `text/event-stream`, one event, then the end."""
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(_encode(payload))
        await response.write_eof()
        return response

    def _track(self) -> asyncio.Task[Any] | None:
        task = asyncio.current_task()
        if task is not None:
            self._streams.add(task)
        return task

    async def _reply(self, request: web.Request) -> web.StreamResponse:
        """`POST /api/v1/sessions/{id}/messages`: the agent-level event stream."""
        body = await _json_body(request, "MessageRequest", MESSAGE_REQUEST)
        if isinstance(body, web.Response):
            return body
        sid, message = request.match_info["sid"], body["message"]
        self.trace.info(f"💬 [Agent-Level] Processing message for session {sid}")
        self.trace.debug(f"📝 Message content: {message}")
        self._set_status(sid, "agent-streaming", "processing")
        task = self._track()
        try:
            failure = await self._prepare_reply(sid, message)
            if failure is not None:
                self._set_status(sid, "agent-streaming", "error")
                return await self._single_event(request, {"type": "error", "content": failure[1]})
            self.trace.info("🤖 [Agent-Level] Starting agent streaming response...")
            events = reply_events(message, sid, self.env, self.settings(), self._mode())
            return await self._stream(request, sid, message, "agent-streaming", events)
        finally:
            if task is not None:
                self._streams.discard(task)

    async def _provider_stream(self, request: web.Request) -> web.StreamResponse:
        """`POST /api/v1/sessions/{id}/stream`: provider-level tokens."""
        body = await _json_body(request, "MessageRequest", MESSAGE_REQUEST)
        if isinstance(body, web.Response):
            return body
        sid, message = request.match_info["sid"], body["message"]
        self.trace.info(f"🌊 [Provider-Level] Starting token streaming for session {sid}")
        self._set_status(sid, "provider-streaming", "processing")
        task = self._track()
        try:
            failure = await self._prepare_reply(sid, message)
            if failure is not None:
                error = failure[1]["error"]
                text = PROVIDER_REFUSALS[error]
                if error in ("Session not found", "Database error"):
                    self._set_status(sid, "provider-streaming", "error")
                payload = {
                    "type": "error",
                    "content": text,
                    "accumulated": "",
                    "timestamp": int(time.time()),
                    "session_id": sid,
                }
                return await self._single_event(request, payload)
            self.trace.info("🌊 [Provider-Level] Starting direct token streaming...")
            events = provider_tokens(message, sid, self.env, self.settings())
            return await self._stream(request, sid, message, "provider-streaming", events)
        finally:
            if task is not None:
                self._streams.discard(task)

    async def _stream(
        self,
        request: web.Request,
        sid: str,
        message: str,
        endpoint: str,
        events: Iterator[tuple[dict[str, Any], float]],
    ) -> web.StreamResponse:
        behaviour = self.faults.stream_behaviour(*self.project)
        settings = self.settings()
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        response.enable_chunked_encoding()
        await response.prepare(request)
        writer = _SseWriter(response, behaviour)
        pinger = asyncio.create_task(writer.keepalive(settings.keepalive))
        sent = 0
        text: list[str] = []
        completed = False
        self._record("started", sid, 0)
        try:
            for payload, pause in events:
                if pause:
                    await asyncio.sleep(pause)
                if behaviour.die_after_events is not None and sent >= behaviour.die_after_events:
                    # the agent process dies: the connection drops without a final chunk
                    self._record("died", sid, sent)
                    if request.transport is not None:
                        request.transport.abort()
                    return response
                kind = payload["type"]
                if kind == "complete":
                    await self._save_reply(sid, "".join(text))
                    level = (
                        "[Agent-Level] Streaming"
                        if endpoint == "agent-streaming"
                        else ("[Provider-Level] Token streaming")
                    )
                    self.trace.info(f"✅ {level} completed for session: {sid}")
                    self._set_status(sid, endpoint, "completed")
                    completed = True
                await writer.send(_encode(payload))
                sent += 1
                if kind == "message":
                    if payload["content"]["role"] == "Assistant":
                        text.append(payload["content"]["content"])
                elif kind == "token":
                    text.append(payload["content"])
                elif kind == "history_update":
                    await self._compact(sid, message)
                elif kind == "tool_confirmation":
                    await _forever()  # no route confirms it: the reply hangs, as the real one
                elif kind == "error" and endpoint == "agent-streaming":
                    content = payload["content"]
                    if content["message"] == "Failed to start agent processing":
                        self.trace.error(f"❌ Failed to start agent reply: {content['error']}")
                    else:
                        self.trace.error(f"❌ Agent stream error: {content['error']}")
            if not completed:
                self._set_status(sid, endpoint, "error")
            self._record("completed", sid, sent)
            await response.write_eof()
        except asyncio.CancelledError:
            kind = "server_stopped" if self._stopping else "client_disconnected"
            self._record(kind, sid, sent)
            raise
        except ConnectionResetError:  # the client went away between two writes
            self._record("client_disconnected", sid, sent)
            return response
        finally:
            pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pinger
        return response

    async def _send(self, request: web.Request) -> web.StreamResponse:
        """`POST /api/v1/sessions/{id}/send`: the whole reply as one JSON answer."""
        body = await _json_body(request, "MessageRequest", MESSAGE_REQUEST)
        if isinstance(body, web.Response):
            return body
        sid, message = request.match_info["sid"], body["message"]
        self.trace.info(f"💬 [Fire-and-Forget] Processing message for session {sid}")
        self.trace.debug(f"📝 Message content: {message}")
        self._set_status(sid, "sync", "processing")
        task = self._track()
        try:
            failure = await self._prepare_reply(sid, message)
            if failure is not None:
                self._set_status(sid, "sync", "error")
                return _json(failure[1], failure[0])
            self.trace.info("🤖 [Fire-and-Forget] Starting agent processing...")
            behaviour = self.faults.stream_behaviour(*self.project)
            text: list[str] = []
            tools = 0
            seen = 0
            self._record("started", sid, 0)
            for payload, pause in reply_events(
                message, sid, self.env, self.settings(), self._mode()
            ):
                if pause:
                    await asyncio.sleep(pause)
                if behaviour.die_after_events is not None and seen >= behaviour.die_after_events:
                    self._record("died", sid, seen)
                    if request.transport is not None:
                        request.transport.abort()
                    return web.Response(status=500)
                seen += 1
                kind, content = payload["type"], payload["content"]
                if kind == "message" and content["role"] == "Assistant":
                    text.append(content["content"])
                elif kind == "tool_request":
                    tools += 1
                elif kind == "history_update":
                    await self._compact(sid, message)
                elif kind == "tool_confirmation":
                    await _forever()
                elif kind == "error":
                    self._set_status(sid, "sync", "error")
                    self._record("completed", sid, seen)
                    started = content["message"] == "Failed to start agent processing"
                    return _json(
                        {
                            "error": content["message"] if started else "Agent processing failed",
                            "message": content["error"],
                            "session_id": sid,
                        },
                        500,
                    )
            if not await self._save_reply(sid, "".join(text)):
                self._set_status(sid, "sync", "error")
                return _json(
                    {
                        "error": "Failed to save response",
                        "message": "Could not save assistant response to database",
                    },
                    500,
                )
            self._set_status(sid, "sync", "completed")
            self._record("completed", sid, seen)
            self.trace.info(f"✅ [Fire-and-Forget] Processing completed for session: {sid}")
            return _json(
                {
                    "message": "Message processed successfully",
                    "session_id": sid,
                    "assistant_response": "".join(text),
                    "timestamp": int(time.time()),
                    "tool_calls_count": tools,
                }
            )
        except asyncio.CancelledError:
            self._record("server_stopped" if self._stopping else "client_disconnected", sid, 0)
            raise
        finally:
            if task is not None:
                self._streams.discard(task)

    # ------------------------------------------------------------------ extensions

    async def _list_extensions(self, request: web.Request) -> web.Response:
        self.trace.info("🧩 Listing all extensions...")
        try:
            entries = self.config.extensions()
        except ConfigError as exc:
            self.trace.error(f"❌ Failed to list extensions: {exc}")
            return _json({"extensions": [], "total_count": 0}, 500)
        infos = sorted((_extension_info(e) for e in entries.values()), key=lambda i: i["name"])
        self.trace.info(f"✅ Listed {len(infos)} extensions")
        return _json({"extensions": infos, "total_count": len(infos)})

    async def _create_extension(self, request: web.Request) -> web.Response:
        body = await _json_body(request, "ExtensionCreateRequest", EXTENSION_CREATE)
        if isinstance(body, web.Response):
            return body
        name, kind = body["name"], body["type"]
        self.trace.info(f"➕ Creating extension: {name}")
        missing = {"stdio": "cmd", "sse": "uri", "streamable_http": "uri"}.get(kind)
        if kind == "inline_python":
            missing = "python_code"
        if kind not in EXTENSION_TYPES:
            return _json(
                {
                    "error": "Invalid extension type",
                    "message": f"Unsupported extension type: {kind}",
                },
                400,
            )
        if missing and body.get(missing) is None:
            return _json(
                {
                    "error": "Missing required field",
                    "message": f"{missing} is required for {kind} extensions",
                },
                400,
            )
        entry: dict[str, Any] = {"enabled": True, "type": kind, "name": name}
        for key in ("display_name", "timeout", "bundled", "description", "cmd", "args", "uri"):
            if body.get(key) is not None:
                entry[key] = body[key]
        if kind == "inline_python":
            entry["code"] = body["python_code"]
        if kind == "stdio":
            entry.setdefault("args", [])
        try:
            self.config.set_extension(entry)
        except ConfigError as exc:
            self.trace.error(f"❌ Failed to create extension {name}: {exc}")
            return _json({"error": "Failed to create extension", "message": str(exc)}, 500)
        self.trace.info(f"✅ Extension {name} created successfully")
        return _json(
            {"message": "Extension created successfully", "name": name, "enabled": True}, 201
        )

    async def _toggle_extension(self, request: web.Request) -> web.Response:
        body = await _json_body(request, "ExtensionToggleRequest", EXTENSION_TOGGLE)
        if isinstance(body, web.Response):
            return body
        name, enabled = request.match_info["name"], body["enabled"]
        self.trace.info(f"🔄 Toggling extension {name}: enabled={'true' if enabled else 'false'}")
        try:
            entries = self.config.extensions()
            key = _extension_key(name)
            if key in entries:
                self.config.set_extension({**entries[key], "enabled": enabled})
        except ConfigError as exc:
            self.trace.error(f"❌ Failed to toggle extension {name}: {exc}")
            return _json({"error": "Failed to toggle extension", "message": str(exc)}, 500)
        return _json(
            {"message": "Extension toggled successfully", "name": name, "enabled": enabled}
        )

    async def _remove_extension(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.trace.info(f"🗑️ Removing extension: {name}")
        try:
            entries = self.config.extensions()
        except ConfigError as exc:
            return _json({"error": "Failed to check extensions", "message": str(exc)}, 500)
        found = next((e for e in entries.values() if e.get("name") == name), None)
        if found is None:
            return _json(
                {"error": "Extension not found", "message": f"Extension {name} does not exist"},
                404,
            )
        if found.get("enabled"):
            return _json(
                {
                    "error": "Extension is enabled",
                    "message": "Cannot remove enabled extension. Disable it first.",
                },
                400,
            )
        try:
            self.config.remove_extension(_extension_key(name))
        except ConfigError as exc:
            return _json({"error": "Failed to remove extension", "message": str(exc)}, 500)
        return web.Response(status=204)

    # ------------------------------------------------------------------ settings

    def _setting_value(self, key: str, value_type: str) -> tuple[Any, str | None]:
        """(current value, environment override) of a setting, as the real list shows it."""
        override = self.env.get(key)
        if override is not None:
            if value_type == "number":
                try:
                    return float(override), override
                except ValueError:
                    return override, override
            return override, override
        value = self.config.values().get(key) if key in self.config.values() else None
        if value_type == "number":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            return (float(value) if ok else None), None
        return (value if isinstance(value, str) else None), None

    def _setting_info(
        self, meta: tuple[str, str, str, dict[str, Any] | None, bool]
    ) -> dict[str, Any]:
        key, description, value_type, validation, restart = meta
        try:
            value, override = self._setting_value(key, value_type)
        except ConfigError:
            value, override = None, None
        info: dict[str, Any] = {
            "key": key,
            "value": value,
            "default_value": SETTING_DEFAULTS.get(key),
            "description": description,
            "value_type": value_type,
        }
        if validation is not None:
            info["validation"] = validation
        if override is not None:
            info["env_override"] = override
        info["restart_required"] = restart
        return info

    @staticmethod
    def _validate(key: str, value: Any, validation: dict[str, Any] | None) -> str | None:
        """`validate_setting_value`: the error text, or None."""
        if validation is None:
            return None
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if key in ("GOOSE_TEMPERATURE", "GOOSE_CLI_MIN_PRIORITY", "GOOSE_AUTO_COMPACT_THRESHOLD"):
            if not number:
                return "Value must be a number"
            if "min" in validation and value < validation["min"]:
                return f"Value must be at least {_rust_float(validation['min'])}"
            if "max" in validation and value > validation["max"]:
                return f"Value must be at most {_rust_float(validation['max'])}"
        elif key == "GOOSE_MAX_TURNS":
            if not number:
                return "Value must be a number"
            if not isinstance(value, int) or value < 0:
                return "Must be a positive integer"
            if value < 1:
                return "Value must be at least 1"
        elif not isinstance(value, str):
            return "Value must be a string"
        if "allowed_values" in validation:
            if not isinstance(value, str):
                return "Value must be a string for enum validation"
            if value not in validation["allowed_values"]:
                return f"Value must be one of: {', '.join(validation['allowed_values'])}"
        if "pattern" in validation:
            if not isinstance(value, str):
                return "Value must be a string for pattern validation"
            if not re.search(validation["pattern"], value):
                return f"Value does not match required format: {validation['pattern']}"
        return None

    @staticmethod
    def _meta(key: str) -> tuple[str, str, str, dict[str, Any] | None, bool] | None:
        return next((m for m in SETTINGS if m[0] == key), None)

    async def _list_settings(self, request: web.Request) -> web.Response:
        self.trace.info("⚙️ Listing all settings...")
        infos = [self._setting_info(meta) for meta in SETTINGS]
        self.trace.info(f"✅ Listed {len(infos)} settings")
        return _json({"settings": infos, "total_count": len(infos)})

    async def _get_setting(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        self.trace.info(f"🔍 Getting setting: {key}")
        meta = self._meta(key)
        if meta is None:
            return _json(
                {"error": "Setting not found", "message": f"Setting {key} is not supported"}, 404
            )
        return _json(self._setting_info(meta))

    async def _update_setting(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        body = await _json_body(request, "SettingUpdateRequest", SETTING_UPDATE)
        if isinstance(body, web.Response):
            return body
        value = body["value"]
        self.trace.info(f"⚙️ Updating setting {key}: {value!r}")
        meta = self._meta(key)
        if meta is None:
            return _json(
                {
                    "error": "Setting not supported",
                    "message": f"Setting {key} is not configurable via API",
                },
                404,
            )
        if key in self.env:
            return _json(
                {
                    "error": "Setting overridden",
                    "message": f"Setting {key} is overridden by environment variable and "
                    "cannot be modified",
                },
                400,
            )
        problem = self._validate(key, value, meta[3])
        if problem:
            self.trace.error(f"❌ Validation failed for {key}: {problem}")
            return _json({"error": "Validation failed", "message": problem}, 400)
        try:
            self.config.set_param(key, value)
        except ConfigError as exc:
            self.trace.error(f"❌ Failed to update setting {key}: {exc}")
            return _json({"error": "Failed to update setting", "message": str(exc)}, 500)
        self.trace.info(f"✅ Setting {key} updated successfully")
        return _json(
            {
                "message": "Setting updated successfully",
                "key": key,
                "value": value,
                "restart_required": meta[4],
            }
        )

    async def _reset_setting(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        self.trace.info(f"🔄 Resetting setting to default: {key}")
        if self._meta(key) is None:
            return _json(
                {
                    "error": "Setting not supported",
                    "message": f"Setting {key} is not configurable via API",
                },
                404,
            )
        if key in self.env:
            return _json(
                {
                    "error": "Setting overridden",
                    "message": f"Setting {key} is overridden by environment variable and "
                    "cannot be reset",
                },
                400,
            )
        try:
            self.config.delete(key)
        except ConfigError as exc:
            return _json({"error": "Failed to reset setting", "message": str(exc)}, 500)
        return _json(
            {
                "message": "Setting reset to default successfully",
                "key": key,
                "default_value": SETTING_DEFAULTS.get(key),
            }
        )

    async def _bulk_settings(self, request: web.Request) -> web.Response:
        body = await _json_body(request, "BulkSettingsUpdateRequest", BULK_SETTINGS)
        if isinstance(body, web.Response):
            return body
        updates: dict[str, Any] = body["settings"]
        self.trace.info(f"⚙️ Bulk updating {len(updates)} settings")
        results: list[dict[str, Any]] = []
        succeeded = 0
        restart = False
        for key, value in updates.items():
            meta = self._meta(key)
            if meta is None:
                error = f"Setting {key} is not supported"
            elif key in self.env:
                error = f"Setting {key} is overridden by environment variable"
            else:
                error = self._validate(key, value, meta[3])
            if error is None and meta is not None:
                try:
                    self.config.set_param(key, value)
                except ConfigError as exc:
                    error = str(exc)
            if error is not None or meta is None:
                results.append({"key": key, "success": False, "error": error})
                continue
            succeeded += 1
            restart = restart or meta[4]
            results.append(
                {"key": key, "success": True, "value": value, "restart_required": meta[4]}
            )
        summary = f"Bulk update completed: {succeeded}/{len(updates)} settings updated"
        self.trace.info(f"✅ {summary}")
        return _json(
            {
                "message": summary,
                "success_count": succeeded,
                "total_count": len(updates),
                "restart_required": restart,
                "results": results,
            }
        )


def _rust_float(value: float) -> str:
    """`{}` of an f64 in Rust: `1`, `0.5` (no trailing `.0`)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))
