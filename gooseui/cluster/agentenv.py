"""The agent's environment: where it comes from, what it must hold, and its copy per user.

The real `goose api-server` exits at once without `MONGODB_URL`, `GOOSE_PROVIDER` and
`GOOSE_MODEL` (the pod then crash-loops), and a provider key is a secret. So the console
reads the environment from one source the operator controls (a Secret in the console's
namespace, or a dotenv file on the console's machine), checks it before anything scales up,
and applies a copy into the user's namespace at every activation: a change of the source
reaches a pod at its next activation, and the console owns what it put there. The values
are never logged; only key names are named in messages.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gooseui import redaction
from gooseui.cluster.client import KubeClient, KubeError, path_for
from gooseui.config import Settings, env_name

REQUIRED_KEYS = ("MONGODB_URL", "GOOSE_PROVIDER", "GOOSE_MODEL")
# the API has no route to confirm a tool call: any approval mode hangs a reply
DEFAULTS = {"GOOSE_MODE": "auto"}
# what `gooseui --simulate` gives the simulated agents when no source is configured
DEMO_PROVIDER = {"GOOSE_PROVIDER": "simulated", "GOOSE_MODEL": "simulated-agent"}

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
FAILURE_MARK = "***"  # what failure messages show for a secret (the pages show `••••`)


def mask_url(text: str) -> str:
    """Every `scheme://user:password@` in `text` with the password masked (userinfo without
    a password, such as a token, masked whole)."""
    return redaction.mask_url_credentials(text, FAILURE_MARK)


def redact(text: str, values: dict[str, str]) -> str:
    """`text` without the secrets of an agent environment (for what the operator is shown).

    The rules of `gooseui.redaction` (the environment's values except plain settings such as
    the model, key-shaped strings, passwords in URLs: the agent logs its whole MONGODB_URL),
    with `***` for a failure message.
    """
    return redaction.redact_text(text, redaction.secret_values(values), FAILURE_MARK)


_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


class AgentMisconfigured(Exception):
    """The agent's environment is missing or incomplete; the message says where to fix it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class AgentEnvironment:
    """What a user's namespace receives for its agents."""

    values: dict[str, str]  # the agent Secret's data, decoded
    source: str  # where it was read, for messages
    config: str | None = None  # the agent's config.yaml
    pull_secret: dict[str, Any] | None = field(default=None)  # {"type", "data"} of the copy

    def checksum(self) -> str:
        """Changes whenever what the pod reads changes, so the pod template rolls."""
        digest = hashlib.sha256()
        digest.update(json.dumps(self.values, sort_keys=True).encode())
        digest.update(b"\0" + (self.config or "").encode())
        return digest.hexdigest()[:32]

    def encoded(self) -> dict[str, str]:
        """The values as a Secret's base64 `data`."""
        return {k: base64.b64encode(v.encode()).decode() for k, v in sorted(self.values.items())}


def parse_dotenv(text: str, origin: str = "the file") -> dict[str, str]:
    """`KEY=VALUE` lines (blank lines, `#` comments and `export ` allowed; quotes stripped).

    No interpolation: a value is taken as written, so a `$` in a password stays a `$`.
    """
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not _ENV_NAME.match(key):
            raise ValueError(f"{origin} line {number}: expected KEY=VALUE with KEY a variable name")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            quote, value = value[0], value[1:-1]
            if quote == '"':
                value = value.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


def _decode(data: dict[str, Any] | None, where: str) -> dict[str, str]:
    values = {}
    for key, encoded in (data or {}).items():
        try:
            values[key] = base64.b64decode(str(encoded), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise AgentMisconfigured(f"Key {key} of {where} is not UTF-8 text.") from None
    return values


class AgentEnvSource:
    """Reads the agent's environment from the configured source, fresh at each activation."""

    def __init__(
        self, settings: Settings, kube: KubeClient, demo: dict[str, str] | None = None
    ) -> None:
        self.settings = settings
        self.kube = kube
        self.demo = demo  # the simulator's demo environment, used when no source is set

    def describe(self) -> str:
        s = self.settings
        if s.goose_env_secret:
            return f"Secret {s.goose_env_secret} in namespace {s.console_namespace}"
        if s.goose_env_file:
            return f"file {s.goose_env_file}"
        if self.demo is not None:
            return "the simulated cluster's demo environment"
        return "no source"

    async def load(self) -> AgentEnvironment:
        """The environment, checked; `AgentMisconfigured` names what is missing and where."""
        s = self.settings
        where = self.describe()
        if s.goose_env_secret:
            values = await self._read_secret(
                s.goose_env_secret, env_name("goose_env_secret"), "agent environment"
            )
            values = _decode(values.get("data"), where)
        elif s.goose_env_file:
            try:
                text = await asyncio.to_thread(Path(s.goose_env_file).read_text, "utf-8")
                values = parse_dotenv(text, f"{env_name('goose_env_file')} ({s.goose_env_file})")
            except OSError as exc:
                raise AgentMisconfigured(
                    f"The agent environment file {s.goose_env_file} cannot be read "
                    f"({exc.strerror or exc}); check {env_name('goose_env_file')}."
                ) from None
            except ValueError as exc:
                raise AgentMisconfigured(str(exc)) from None
        elif self.demo is not None:
            values = dict(self.demo)
        else:
            raise AgentMisconfigured(
                "The agent has no environment: set "
                f"{env_name('goose_env_secret')} (a Secret in namespace {s.console_namespace}) "
                f"or {env_name('goose_env_file')} (a dotenv file) with "
                f"{', '.join(REQUIRED_KEYS)} and the provider's key."
            )
        missing = [key for key in REQUIRED_KEYS if not values.get(key, "").strip()]
        if missing:
            raise AgentMisconfigured(
                f"The agent's environment lacks {', '.join(missing)} (read from {where}); "
                "the agent exits at start without "
                f"{'it' if len(missing) == 1 else 'them'}."
            )
        bad = [key for key in values if not _SECRET_KEY.match(key)]
        if bad:
            raise AgentMisconfigured(
                f"The agent's environment has keys a Secret cannot hold: {', '.join(bad)} "
                f"(read from {where})."
            )
        for key, value in DEFAULTS.items():
            values.setdefault(key, value)
        config = None
        if s.goose_config is not None:
            try:
                config = await asyncio.to_thread(Path(s.goose_config).read_text, "utf-8")
            except OSError as exc:
                raise AgentMisconfigured(
                    f"The agent's config file {s.goose_config} cannot be read "
                    f"({exc.strerror or exc}); check {env_name('goose_config')}."
                ) from None
        pull = None
        if s.image_pull_secret:
            source = await self._read_secret(
                s.image_pull_secret, env_name("image_pull_secret"), "image pull"
            )
            pull = {"type": source.get("type") or "Opaque", "data": source.get("data") or {}}
        return AgentEnvironment(values, where, config, pull)

    async def _read_secret(self, name: str, variable: str, what: str) -> dict[str, Any]:
        namespace = self.settings.console_namespace
        try:
            secret = await self.kube.get(path_for("Secret", namespace, name))
        except KubeError as exc:
            if exc.status in (401, 403):
                raise AgentMisconfigured(
                    f"The console may not read the {what} Secret {name} in namespace "
                    f"{namespace} ({exc.status} {exc.reason}): grant it `get` on secrets there."
                ) from None
            raise
        if secret is None:
            raise AgentMisconfigured(
                f"The {what} Secret {name} does not exist in namespace {namespace} "
                f"({variable}); create it there, e.g. `kubectl -n {namespace} create secret "
                + (
                    f"generic {name} --from-env-file=agent.env`."
                    if what == "agent environment"
                    else f"docker-registry {name} --docker-server=… --docker-username=… "
                    "--docker-password=…`."
                )
            )
        return secret
