"""Settings, read once from the environment.

Names kept from the original plan (`KUBECONFIG`, `ACR_IMAGE`, `MONGO_URI`, ...) are read
without a prefix; everything else carries `GOOSEUI_`. A bad value must stop the start with
one line naming the variable, so `load_settings` turns pydantic's report into `ConfigError`.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
import string
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import AliasChoices, BaseModel, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gooseui.textrules import MAX_MESSAGE

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# `<prefix><uid>` must stay a DNS label (63 characters); project ids are 8 characters, so
# `proj-<pid>-api` is always short enough.
MAX_LABEL = 63

DEMO_USERS = "alice:Alice Anders,bob:Bob Brenner,carol:Carol Chen"

# The image's entrypoint is `goose api-server --port 3001 --host 0.0.0.0`; `args` alone would
# be appended to it, so moving the port means replacing the command as well.
GOOSE_COMMAND = "/usr/local/bin/goose"
GOOSE_ARGS = "api-server --host 0.0.0.0 --port {port}"
AGENT_DATABASE = "goose_{user_id}"
# MongoDB refuses these in database names (and names longer than 63 bytes)
_BAD_DB_CHARS = set('/\\. "$*<>:|?')

_UNPREFIXED = {
    "kubeconfig": "KUBECONFIG",
    "acr_image": "ACR_IMAGE",
    "ingress_base_domain": "INGRESS_BASE_DOMAIN",
    "namespace_prefix": "NAMESPACE_PREFIX",
    "mongo_uri": "MONGO_URI",
    "mongo_db": "MONGO_DB",
    "projects_collection": "PROJECTS_COLLECTION",
}


class ConfigError(Exception):
    """A setting is wrong; the message is one line that names the variable."""


class User(BaseModel):
    id: str
    name: str


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


def env_name(field: str) -> str:
    """The environment variable that sets `field`."""
    return _UNPREFIXED.get(field, f"GOOSEUI_{field.upper()}")


class Settings(BaseSettings):
    """Everything the console can be told from outside (DESIGN section 2)."""

    model_config = SettingsConfigDict(
        env_prefix="GOOSEUI_", case_sensitive=False, extra="ignore", populate_by_name=True
    )

    kubeconfig: str | None = Field(None, validation_alias=_env("KUBECONFIG"))
    acr_image: str = Field("goose-api:latest", validation_alias=_env("ACR_IMAGE"), min_length=1)
    ingress_base_domain: str | None = Field(None, validation_alias=_env("INGRESS_BASE_DOMAIN"))
    namespace_prefix: str = Field("user-", validation_alias=_env("NAMESPACE_PREFIX"))
    mongo_uri: str | None = Field(None, validation_alias=_env("MONGO_URI"))
    mongo_db: str = Field("gooseui", validation_alias=_env("MONGO_DB"), min_length=1)
    projects_collection: str = Field(
        "projects", validation_alias=_env("PROJECTS_COLLECTION"), min_length=1
    )

    users: str = DEMO_USERS
    goose_port: int = Field(3001, ge=1, le=65535)
    endpoint_mode: Literal["auto", "service", "ingress", "proxy"] = "auto"
    exposure: Literal["ingress", "httproute", "none"] = "ingress"
    ingress_class: str = "nginx"
    gateway_name: str | None = None
    gateway_namespace: str | None = None
    activation_timeout: float = Field(300.0, gt=0)
    # the agent's environment (MONGODB_URL, GOOSE_PROVIDER, GOOSE_MODEL, provider keys): a
    # Secret in the console's namespace, or a dotenv file; exactly one
    goose_env_secret: str | None = None
    goose_env_file: Path | None = None
    # the agent's sessions database, per user by default so users never see each other's
    agent_database: str = AGENT_DATABASE
    goose_command: str = Field(GOOSE_COMMAND, min_length=1)
    goose_args: str = GOOSE_ARGS
    # a config.yaml for the agent (its extensions, i.e. its tools), mounted in the pod
    goose_config: Path | None = None
    image_pull_secret: str | None = None
    data_dir: Path = Path(".gooseui")
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    log_format: Literal["console", "json"] = "console"
    storage_secret: str | None = None

    # the pod's resources, and the namespace's guard rails (DESIGN section 5)
    cpu_request: str = "250m"
    cpu_limit: str = "1"
    memory_request: str = "256Mi"
    memory_limit: str = "1Gi"
    limit_range: bool = True
    quota_pods: int | None = Field(None, ge=0)
    quota_cpu: str | None = None
    quota_memory: str | None = None
    network_policy: bool = True
    console_namespace: str = "gooseui"
    ingress_namespace: str = "ingress-nginx"
    # where the API server's service-proxy traffic enters pods from (AKS: konnectivity agent)
    apiserver_namespace: str = "kube-system"
    # where API-server proxy traffic comes from when not from pods (AKS with API Server VNet
    # Integration, kubeadm, kind, k3s): admitted by the NetworkPolicy as ipBlocks
    apiserver_cidrs: str | None = None
    # source ranges allowed to reach a project's route (the agent's API has no auth)
    route_allow_cidrs: str | None = None
    # how long the agent's health check may fail after the pod is ready
    health_timeout: float = Field(15.0, gt=0)
    # the largest request body any route reads (413 BodyTooLarge above it); never so small
    # that the longest message, every character JSON-escaped (12 bytes for `\ud83e\udebf`),
    # is refused
    max_body: int = Field(1024 * 1024, ge=12 * MAX_MESSAGE + 1024, le=64 * 1024 * 1024)
    keep_namespaces: bool = False
    # seconds between reconciliation passes after the one at start (0: only at start)
    reconcile_interval: float = Field(5.0, ge=0, le=3600)
    # an unschedulable pod may be waiting for the cluster autoscaler to add a node
    unschedulable_grace: float = Field(180.0, ge=0)
    cluster_label: str | None = None
    # a chat stream gets a keep-alive comment when the agent has been silent this long
    chat_keepalive: float = Field(15.0, gt=0, le=15.0)
    # minutes an active project may go without a message, an open reply or agent work
    # before it is stopped with reason Idle (0: never)
    idle_timeout: float = Field(60.0, ge=0)

    @field_validator("namespace_prefix")
    @classmethod
    def _prefix_is_label_start(cls, value: str) -> str:
        if not value or not DNS_LABEL.match(value + "x") or len(value) > 40:
            raise ValueError(
                "must be lowercase letters, digits and '-', start with a letter or digit, "
                "and be at most 40 characters"
            )
        return value

    @field_validator(
        "ingress_base_domain",
        "mongo_uri",
        "kubeconfig",
        "gateway_name",
        "gateway_namespace",
        "goose_env_secret",
        "goose_env_file",
        "goose_config",
        "image_pull_secret",
        "apiserver_cidrs",
        "route_allow_cidrs",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("apiserver_cidrs", "route_allow_cidrs")
    @classmethod
    def _cidrs_parse(cls, value: str | None) -> str | None:
        return None if value is None else ",".join(parse_cidrs(value))

    @field_validator("goose_env_file", "goose_config")
    @classmethod
    def _file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not _is_file(value):
            raise ValueError(f"file {str(value)[:200]!r} does not exist")
        return value

    @field_validator("goose_config")
    @classmethod
    def _config_is_yaml(cls, value: Path | None) -> Path | None:
        if value is not None:
            try:
                yaml.safe_load(value.read_text(encoding="utf-8"))
            except (yaml.YAMLError, UnicodeDecodeError) as exc:
                raise ValueError(f"{str(value)!r} is not YAML: {exc}".splitlines()[0]) from None
        return value

    @field_validator("agent_database")
    @classmethod
    def _database_template(cls, value: str) -> str:
        fields = {f for _, f, _, _ in string.Formatter().parse(value) if f is not None}
        if not fields <= {"user_id", "project_id"}:
            raise ValueError("may only use {user_id} and {project_id}")
        sample = value.format(user_id="u" * 30, project_id="p" * 8)
        if not sample or _BAD_DB_CHARS & set(sample) or len(sample.encode()) > 63:
            raise ValueError(
                'must give a MongoDB database name (no / \\ . space " $ * < > : | ?, '
                "at most 63 bytes for the longest user id)"
            )
        return value

    @field_validator("goose_args")
    @classmethod
    def _args_parse(cls, value: str) -> str:
        try:
            [arg.format(port=1) for arg in shlex.split(value)]
        except (ValueError, KeyError, IndexError) as exc:
            raise ValueError(f"cannot be split into arguments ({exc}); use {{port}} only") from None
        return value

    @field_validator("users")
    @classmethod
    def _users_parse(cls, value: str) -> str:
        parse_users(value)  # validated here so that a bad list stops the start
        return value

    def user_list(self) -> list[User]:
        """The operators' users, in the order configured."""
        return parse_users(self.users, prefix=self.namespace_prefix)

    @property
    def mongo_embedded(self) -> bool:
        return self.mongo_uri is None

    def goose_argv(self) -> list[str]:
        """The agent container's `args`, with `{port}` filled in."""
        return [arg.format(port=self.goose_port) for arg in shlex.split(self.goose_args)]

    def agent_database_for(self, user_id: str, project_id: str) -> str:
        return self.agent_database.format(user_id=user_id, project_id=project_id)

    def apiserver_cidr_list(self) -> list[str]:
        return self.apiserver_cidrs.split(",") if self.apiserver_cidrs else []

    def route_allow_cidr_list(self) -> list[str]:
        return self.route_allow_cidrs.split(",") if self.route_allow_cidrs else []


def parse_cidrs(value: str) -> list[str]:
    """Comma-separated CIDRs (a bare address is one host), normalised; a bad one is an error."""
    cidrs = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            network = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or CIDR") from None
        cidrs.append(str(network))
    if not cidrs:
        raise ValueError("no CIDR given")
    return cidrs


def _is_file(path: Path) -> bool:
    """`path.is_file()`, False where the name itself is impossible (too long, a NUL)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _names_a_file(text: str, path: Path) -> bool:
    """Whether `GOOSEUI_USERS` names a file: a YAML/JSON path, or an existing file.

    `id:Name` pairs and commas are inline, so a long inline list never reaches the
    filesystem (a name longer than the filesystem allows would raise there).
    """
    if path.suffix.lower() in {".yaml", ".yml", ".json"} and "," not in text:
        return True
    if "," in text or ":" in text:
        return False
    return _is_file(path)


def parse_users(value: str, prefix: str = "user-") -> list[User]:
    """Parse `id:Name,id:Name` or the path of a YAML/JSON file.

    A file holds either a list of `{id, name}` objects or a mapping of id to name.
    """
    text = value.strip()
    if not text:
        raise ValueError("no users given")
    path = Path(text)
    if _names_a_file(text, path):
        if not path.is_file():
            raise ValueError(f"file {text!r} does not exist")
        raw = path.read_text(encoding="utf-8")
        try:
            data = json.loads(raw) if path.suffix.lower() == ".json" else yaml.safe_load(raw)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise ValueError(f"file {text!r} is not valid: {exc}".splitlines()[0]) from None
        if isinstance(data, dict):
            pairs = [(str(k), str(v)) for k, v in data.items()]
        elif isinstance(data, list) and all(isinstance(i, dict) for i in data):
            pairs = [(str(i.get("id", "")), str(i.get("name") or i.get("id", ""))) for i in data]
        else:
            raise ValueError(f"file {text!r} must hold a list of {{id, name}} or a mapping")
    else:
        pairs = []
        for item in text.split(","):
            if not item.strip():
                continue
            uid, sep, name = item.partition(":")
            pairs.append((uid.strip(), (name if sep else uid).strip()))
    users: list[User] = []
    seen: set[str] = set()
    for uid, name in pairs:
        if not DNS_LABEL.match(uid) or len(prefix + uid) > MAX_LABEL:
            raise ValueError(
                f"user id {uid!r} must be a DNS-1123 label (lowercase letters, digits, '-') "
                f"and short enough that {prefix!r} + id stays within {MAX_LABEL} characters"
            )
        if uid in seen:
            raise ValueError(f"user id {uid!r} appears twice")
        seen.add(uid)
        users.append(User(id=uid, name=name or uid))
    if not users:
        raise ValueError("no users given")
    return users


def load_settings(**overrides: Any) -> Settings:
    """Read the settings, turning a validation failure into one readable line."""
    try:
        settings = Settings(**overrides)
        settings.user_list()
        if settings.goose_env_secret and settings.goose_env_file:
            raise ConfigError(
                f"{env_name('goose_env_secret')} and {env_name('goose_env_file')} are both set; "
                "set one: the Secret in the cluster, or the file on this machine"
            )
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else "?"
        field = next(
            (f for f, alias in _UNPREFIXED.items() if alias.lower() == field.lower()), field
        )
        message = error["msg"].removeprefix("Value error, ")
        got = error.get("input")
        text = repr(got) if isinstance(got, str | int | float) else ""
        shown = f" (got {text[:200]}{'…' if len(text) > 200 else ''})" if text else ""
        more = f"; {exc.error_count() - 1} more" if exc.error_count() > 1 else ""
        raise ConfigError(f"{env_name(field)}: {message}{shown}{more}") from None
    except ValueError as exc:
        raise ConfigError(f"{env_name('users')}: {exc}") from None
    return settings
