"""Settings: defaults, users, and one clear line for every bad value."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gooseui.config import ConfigError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("GOOSEUI_", "MONGO_", "NAMESPACE_PREFIX", "ACR_IMAGE")):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    settings = load_settings()
    assert settings.port == 8080 and settings.host == "127.0.0.1"
    assert settings.acr_image == "goose-api:latest"
    assert settings.namespace_prefix == "user-"
    assert settings.mongo_uri is None and settings.mongo_embedded
    assert settings.goose_port == 3001 and settings.endpoint_mode == "auto"
    assert [u.id for u in settings.user_list()] == ["alice", "bob", "carol"]


def test_unprefixed_and_prefixed_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACR_IMAGE", "myacr.azurecr.io/goose-api:1.2")
    monkeypatch.setenv("MONGO_URI", "mongodb://db.example:27017")
    monkeypatch.setenv("NAMESPACE_PREFIX", "goose-")
    monkeypatch.setenv("GOOSEUI_USERS", "u1:Una, u2:Dos")
    monkeypatch.setenv("GOOSEUI_ENDPOINT_MODE", "proxy")
    settings = load_settings()
    assert settings.acr_image == "myacr.azurecr.io/goose-api:1.2"
    assert settings.mongo_uri == "mongodb://db.example:27017"
    assert settings.namespace_prefix == "goose-"
    assert [(u.id, u.name) for u in settings.user_list()] == [("u1", "Una"), ("u2", "Dos")]
    assert settings.endpoint_mode == "proxy"


@pytest.mark.parametrize("suffix", ["yaml", "json"])
def test_users_from_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str) -> None:
    path = tmp_path / f"users.{suffix}"
    data = [{"id": "ann", "name": "Ann"}, {"id": "ben", "name": "Ben"}]
    path.write_text(json.dumps(data))  # JSON is YAML too
    monkeypatch.setenv("GOOSEUI_USERS", str(path))
    assert [u.name for u in load_settings().user_list()] == ["Ann", "Ben"]


def test_users_file_as_mapping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "users.yaml"
    path.write_text("ann: Ann A\nben: Ben B\n")
    monkeypatch.setenv("GOOSEUI_USERS", str(path))
    assert [(u.id, u.name) for u in load_settings().user_list()] == [
        ("ann", "Ann A"),
        ("ben", "Ben B"),
    ]


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("GOOSEUI_PORT", "abc", "GOOSEUI_PORT: Input should be a valid integer"),
        ("GOOSEUI_PORT", "70000", "GOOSEUI_PORT: Input should be less than or equal to 65535"),
        ("GOOSEUI_ENDPOINT_MODE", "magic", "GOOSEUI_ENDPOINT_MODE: Input should be 'auto'"),
        ("GOOSEUI_ACTIVATION_TIMEOUT", "-1", "GOOSEUI_ACTIVATION_TIMEOUT: Input should be greater"),
        ("NAMESPACE_PREFIX", "User_", "NAMESPACE_PREFIX: must be lowercase"),
        ("GOOSEUI_USERS", "Alice:Alice", "GOOSEUI_USERS: user id 'Alice' must be a DNS-1123 label"),
        ("GOOSEUI_USERS", "a:A,a:B", "GOOSEUI_USERS: user id 'a' appears twice"),
        ("GOOSEUI_USERS", "x" * 60, "GOOSEUI_USERS: user id"),
        ("GOOSEUI_USERS", "/nowhere/users.yaml", "GOOSEUI_USERS: file '/nowhere/users.yaml' does"),
        ("GOOSEUI_LOG_FORMAT", "xml", "GOOSEUI_LOG_FORMAT: Input should be 'console' or 'json'"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_cli_stops_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOOSEUI_")}
    env["GOOSEUI_PORT"] = "not-a-port"
    result = subprocess.run(
        [sys.executable, "-m", "gooseui"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "gooseui: configuration error: GOOSEUI_PORT: Input should be a valid integer, unable to "
        "parse string as an integer (got 'not-a-port')"
    ]


def test_agent_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = load_settings()
    assert settings.goose_argv() == ["api-server", "--host", "0.0.0.0", "--port", "3001"]
    assert settings.agent_database_for("alice", "p1") == "goose_alice"
    env = tmp_path / "agent.env"
    env.write_text("MONGODB_URL=mongodb://x\n")
    monkeypatch.setenv("GOOSEUI_GOOSE_ENV_FILE", str(env))
    monkeypatch.setenv("GOOSEUI_GOOSE_PORT", "8080")
    monkeypatch.setenv("GOOSEUI_AGENT_DATABASE", "agents_{project_id}")
    monkeypatch.setenv("GOOSEUI_APISERVER_CIDRS", " 10.224.0.4 , 172.16.0.0/28")
    settings = load_settings()
    assert settings.goose_argv()[-1] == "8080"
    assert settings.agent_database_for("alice", "p1") == "agents_p1"
    assert settings.apiserver_cidr_list() == ["10.224.0.4/32", "172.16.0.0/28"]


@pytest.mark.parametrize(
    ("variables", "named", "says"),
    [
        ({"GOOSEUI_APISERVER_CIDRS": "10.0.0.0/8,nope"}, "GOOSEUI_APISERVER_CIDRS", "'nope'"),
        ({"GOOSEUI_ROUTE_ALLOW_CIDRS": "300.1.1.1"}, "GOOSEUI_ROUTE_ALLOW_CIDRS", "300.1.1.1"),
        ({"GOOSEUI_AGENT_DATABASE": "goose.{user_id}"}, "GOOSEUI_AGENT_DATABASE", "database"),
        ({"GOOSEUI_AGENT_DATABASE": "g_{namespace}"}, "GOOSEUI_AGENT_DATABASE", "{user_id}"),
        ({"GOOSEUI_GOOSE_ENV_FILE": "/no/such.env"}, "GOOSEUI_GOOSE_ENV_FILE", "does not exist"),
        ({"GOOSEUI_GOOSE_CONFIG": "/no/config.yaml"}, "GOOSEUI_GOOSE_CONFIG", "does not exist"),
        ({"GOOSEUI_GOOSE_ARGS": "api-server --port {other}"}, "GOOSEUI_GOOSE_ARGS", "{port}"),
        (
            {"GOOSEUI_GOOSE_ENV_SECRET": "goose-env", "GOOSEUI_GOOSE_ENV_FILE": __file__},
            "GOOSEUI_GOOSE_ENV_FILE",
            "both set",
        ),
    ],
)
def test_bad_agent_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], named: str, says: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as error:
        load_settings()
    message = str(error.value)
    assert named in message and says in message and "\n" not in message


def test_dotenv_parsing() -> None:
    from gooseui.cluster.agentenv import parse_dotenv

    text = (
        "# the agent\n"
        "export MONGODB_URL=mongodb://u:p$w@db:27017/?authSource=admin\n"
        'GOOSE_MODEL="gpt-4o mini"\n'
        "GOOSE_PROVIDER='openai'  \n"
        "OPENAI_HOST=https://llm.example  # the gateway\n"
        "\n"
        "EMPTY=\n"
    )
    assert parse_dotenv(text) == {
        "MONGODB_URL": "mongodb://u:p$w@db:27017/?authSource=admin",
        "GOOSE_MODEL": "gpt-4o mini",
        "GOOSE_PROVIDER": "openai",
        "OPENAI_HOST": "https://llm.example",
        "EMPTY": "",
    }
    with pytest.raises(ValueError, match="line 2"):
        parse_dotenv("A=1\nnot a pair\n")


def test_redaction_of_agent_secrets() -> None:
    from gooseui.cluster.agentenv import redact

    values = {
        "MONGODB_URL": "mongodb://goose:s3cr3t-pw@db.example:27017/?authSource=admin",
        "OPENAI_API_KEY": "sk-live-123456",
        "GOOSE_MODEL": "gpt-4o",
    }
    text = (
        "Connecting to MongoDB: mongodb://goose:s3cr3t-pw@db.example:27017/?authSource=admin; "
        "OPENAI_API_KEY: sk-live-123456; other mongodb://u:p@h/; model gpt-4o"
    )
    shown = redact(text, values)
    assert "s3cr3t-pw" not in shown and "sk-live-123456" not in shown and ":p@" not in shown
    assert "mongodb://goose:***@db.example:27017" in shown  # where it went stays readable
    assert "model gpt-4o" in shown


def test_a_long_inline_user_list_is_not_a_file_name(monkeypatch: pytest.MonkeyPatch) -> None:
    users = ",".join(f"user{i:02d}:User Number {i}" for i in range(40))
    assert len(users) > 255  # longer than a file name may be
    monkeypatch.setenv("GOOSEUI_USERS", users)
    assert len(load_settings().user_list()) == 40
    monkeypatch.setenv("GOOSEUI_USERS", "x" * 300)  # one id, no name: still inline
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert "GOOSEUI_USERS" in str(error.value) and "DNS-1123" in str(error.value)


ODD_VALUES = ["", "x" * 5000, "\x01\x7f\u0085", "::,,", "-1", "1e309", "nan", "{port}", "/"]


@pytest.mark.parametrize("value", ODD_VALUES, ids=range(len(ODD_VALUES)))
def test_no_value_of_any_setting_ends_the_start_in_a_traceback(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """Each variable, long, empty, binary or odd: it parses, or one line names it."""
    from gooseui.config import Settings, env_name

    for field in Settings.model_fields:
        name = env_name(field)
        monkeypatch.setenv(name, value)
        try:
            load_settings()
        except ConfigError as exc:
            message = str(exc)
            assert "\n" not in message and name in message, message
        monkeypatch.delenv(name)
