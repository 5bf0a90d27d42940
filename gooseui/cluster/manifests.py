"""The Kubernetes objects of a user's namespace and of a project (DESIGN section 5).

The objects live as Jinja2 templates in `k8s_manifests/`, one per kind, so an operator can
read what the console applies without reading Python. This module decides *which* objects a
set of settings calls for and *what goes into them*; the templates decide their shape.

Every value that comes from settings or ids passes through the `tojson` filter: a JSON
string is a valid YAML double-quoted scalar, so an image name such as `x"\nfoo: bar` stays
one literal string instead of adding a field. Ids are also checked to be DNS-1123 labels
before anything is rendered, because Kubernetes would refuse anything else anyway and an
early, named error is easier to act on than a 422 from the API server.

The rendered dicts are complete objects, ready for server-side apply, in the order they must
be applied (the Namespace before what lives in it, the Deployment before its Service and
route).
"""

from __future__ import annotations

import json
import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from jinja2 import Environment, FileSystemLoader, StrictUndefined, Undefined

from gooseui.config import Settings, env_name

LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_USER = "gooseui.io/user-id"
LABEL_PROJECT = "gooseui.io/project-id"

APP_NAME = "goose-api"
MANAGER = "gooseui"
MANAGED_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGER}"

CONTAINER_NAME = "goose-api"
PORT_NAME = "http"
HEALTH_PATH = "/api/v1/health"
LIMIT_RANGE_NAME = "gooseui-defaults"
QUOTA_NAME = "gooseui-quota"
NETWORK_POLICY_NAME = "gooseui-allow-goose"
AGENT_SECRET_NAME = "gooseui-agent-env"
CONFIG_MAP_NAME = "gooseui-goose-config"
# HOME is /tmp in the pod (the root filesystem is read-only); the agent reads its config here
CONFIG_PATH = "/tmp/.config/goose/config.yaml"
ANNOTATION_SOURCE = "gooseui.io/source"
CHECKSUM_ANNOTATION = "gooseui.io/agent-env-checksum"

# A Deployment reports ProgressDeadlineExceeded after this long without progress; shorter
# than this the controller gives up on a slow but healthy image pull.
MIN_PROGRESS_DEADLINE = 30
# The startup probe runs every second (readiness is seen within a second of the app being
# up) and tolerates at least this many failures, or the activation timeout if that is longer,
# so that a slow start is not turned into a restart loop before the console gives up.
MIN_STARTUP_FAILURES = 60

TEMPLATES_DIRNAME = "k8s_manifests"

# Kubernetes names and label values (DESIGN section 3: ids are DNS-1123 labels).
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_LABEL = 63

# JSON leaves non-ASCII characters and DEL unescaped, and PyYAML refuses some of them
# (C1 controls, lone surrogates) and folds others (NEL, U+2028) into spaces; escaping every
# one of them keeps each value round-tripping exactly. `\U` (8 hex digits) is YAML, not JSON,
# and keeps astral characters whole instead of splitting them into surrogate pairs.
_NOT_PLAIN_ASCII = re.compile(r"[^\x20-\x7e]")


class ManifestError(ValueError):
    """The objects cannot be rendered: a bad id, a missing setting or a missing template."""


def _check_id(kind: str, value: str) -> str:
    if not isinstance(value, str) or not DNS_LABEL.match(value) or len(value) > MAX_LABEL:
        raise ManifestError(
            f"{kind} {value!r} must be a DNS-1123 label (lowercase letters, digits and '-')"
        )
    return value


def namespace_name(settings: Settings, user_id: str) -> str:
    """The user's namespace, `<prefix><uid>`: one namespace isolates all of a user's projects."""
    name = settings.namespace_prefix + _check_id("user id", user_id)
    if len(name) > MAX_LABEL:
        raise ManifestError(f"namespace {name!r} is longer than {MAX_LABEL} characters")
    return name


def object_name(project_id: str) -> str:
    """The name shared by a project's Deployment, Service and route: `proj-<pid>-api`."""
    name = f"proj-{_check_id('project id', project_id)}-api"
    if len(name) > MAX_LABEL:
        raise ManifestError(f"object name {name!r} is longer than {MAX_LABEL} characters")
    return name


def instance_name(project_id: str) -> str:
    """The `app.kubernetes.io/instance` value of a project: `proj-<pid>`."""
    return f"proj-{_check_id('project id', project_id)}"


def labels(user_id: str, project_id: str) -> dict[str, str]:
    """The five labels every project object carries, so each can be found by user or project."""
    return {
        LABEL_NAME: APP_NAME,
        LABEL_INSTANCE: instance_name(project_id),
        LABEL_MANAGED_BY: MANAGER,
        LABEL_USER: _check_id("user id", user_id),
        LABEL_PROJECT: project_id,
    }


def namespace_labels(user_id: str) -> dict[str, str]:
    """Labels of the namespace-level objects: shared by all projects, so no project labels."""
    return {
        LABEL_NAME: APP_NAME,
        LABEL_MANAGED_BY: MANAGER,
        LABEL_USER: _check_id("user id", user_id),
    }


def selector_labels(project_id: str) -> dict[str, str]:
    """The labels that pick a project's pods (Deployment selector, Service selector).

    Only labels that never change: a Deployment's selector is immutable.
    """
    return {LABEL_INSTANCE: instance_name(project_id), LABEL_NAME: APP_NAME}


def pod_selector(project_id: str) -> str:
    """`selector_labels` as a label-selector string, for listing and watching the pods."""
    return ",".join(f"{key}={value}" for key, value in selector_labels(project_id).items())


def route_kind(settings: Settings) -> str | None:
    """The kind of the external route, or None when the project is not exposed.

    A route needs a host, and hosts hang off INGRESS_BASE_DOMAIN: without it there is none.
    """
    if not _base_domain(settings) or settings.exposure == "none":
        return None
    return "HTTPRoute" if settings.exposure == "httproute" else "Ingress"


def route_host(settings: Settings, user_id: str, project_id: str) -> str | None:
    """The project's external host, `proj-<pid>.<prefix><uid>.<base-domain>`, if it has one."""
    if route_kind(settings) is None:
        return None
    namespace = namespace_name(settings, user_id)
    return f"{instance_name(project_id)}.{namespace}.{_base_domain(settings)}"


def render_namespace(settings: Settings, user_id: str) -> list[dict[str, Any]]:
    """The user's Namespace and its guard rails, in apply order.

    LimitRange when `limit_range` is on, ResourceQuota when any `quota_*` is set,
    NetworkPolicy when `network_policy` is on.
    """
    namespace = namespace_name(settings, user_id)
    common = {"namespace": namespace, "labels": namespace_labels(user_id)}
    objects = [_render("namespace.yaml.j2", **common)]
    if settings.limit_range:
        objects.append(
            _render(
                "limitrange.yaml.j2",
                name=LIMIT_RANGE_NAME,
                cpu_request=settings.cpu_request,
                cpu_limit=settings.cpu_limit,
                memory_request=settings.memory_request,
                memory_limit=settings.memory_limit,
                **common,
            )
        )
    if (
        settings.quota_pods is not None
        or settings.quota_cpu is not None
        or settings.quota_memory is not None
    ):
        objects.append(
            _render(
                "resourcequota.yaml.j2",
                name=QUOTA_NAME,
                pods=None if settings.quota_pods is None else str(settings.quota_pods),
                cpu=settings.quota_cpu,
                memory=settings.quota_memory,
                **common,
            )
        )
    if settings.network_policy:
        objects.append(
            _render(
                "networkpolicy.yaml.j2",
                name=NETWORK_POLICY_NAME,
                pod_selector={LABEL_NAME: APP_NAME},
                allowed_namespaces=allowed_namespaces(settings),
                apiserver_cidrs=settings.apiserver_cidr_list(),
                port=settings.goose_port,
                **common,
            )
        )
    return objects


def allowed_namespaces(settings: Settings) -> list[str]:
    """The namespaces the NetworkPolicy lets reach the Goose API: console and route owner.

    The Goose API has no authentication, so nothing else in the cluster may talk to it. With
    an HTTPRoute the traffic comes from the Gateway's namespace when one is configured.
    """
    route_namespace = settings.ingress_namespace
    if settings.exposure == "httproute" and settings.gateway_namespace:
        route_namespace = settings.gateway_namespace
    allowed = [settings.console_namespace, route_namespace]
    if settings.endpoint_mode in {"proxy", "auto"}:
        # the API server's service proxy reaches pods from there (AKS: konnectivity agent)
        allowed.append(settings.apiserver_namespace)
    return list(dict.fromkeys(allowed))


def render_agent(
    settings: Settings,
    user_id: str,
    values: dict[str, str],
    source: str,
    config: str | None = None,
    pull_secret: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The copies a user's namespace holds for its agents: environment, pull secret, config.

    `values` is the Secret's base64 `data`; `pull_secret` the `{type, data}` of the
    console's pull secret, copied under the same name.
    """
    common = {"namespace": namespace_name(settings, user_id), "labels": namespace_labels(user_id)}
    objects = [
        _render(
            "agent-secret.yaml.j2",
            name=AGENT_SECRET_NAME,
            type="Opaque",
            data=values,
            source=source,
            **common,
        )
    ]
    if pull_secret is not None and settings.image_pull_secret:
        objects.append(
            _render(
                "agent-secret.yaml.j2",
                name=settings.image_pull_secret,
                type=pull_secret.get("type") or "Opaque",
                data=pull_secret.get("data") or {},
                source=f"Secret {settings.image_pull_secret} in namespace "
                f"{settings.console_namespace}",
                **common,
            )
        )
    if config is not None:
        objects.append(
            _render("goose-config.yaml.j2", name=CONFIG_MAP_NAME, config=config, **common)
        )
    return objects


def _project_common(settings: Settings, user_id: str, project_id: str) -> dict[str, Any]:
    return {
        "name": object_name(project_id),
        "namespace": namespace_name(settings, user_id),
        "labels": labels(user_id, project_id),
        "port": settings.goose_port,
    }


def render_deployment(
    settings: Settings,
    user_id: str,
    project_id: str,
    replicas: int,
    checksum: str | None = None,
    model: str | None = None,
) -> dict[str, Any]:
    """The project's Deployment alone (what a scale applies); see `render_project`.

    `model` is the project's own (it overrides the agent environment's GOOSE_MODEL)."""
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
        raise ManifestError(f"replicas must be a non-negative integer, not {replicas!r}")
    common = _project_common(settings, user_id, project_id)
    return _render(
        "deployment.yaml.j2",
        replicas=replicas,
        selector=selector_labels(project_id),
        progress_deadline=max(MIN_PROGRESS_DEADLINE, math.ceil(settings.activation_timeout)),
        startup_failures=max(MIN_STARTUP_FAILURES, math.ceil(settings.activation_timeout)),
        container=CONTAINER_NAME,
        image=settings.acr_image,
        port_name=PORT_NAME,
        health_path=HEALTH_PATH,
        user_id=user_id,
        project_id=project_id,
        command=settings.goose_command,
        args=settings.goose_argv(),
        agent_database=settings.agent_database_for(user_id, project_id),
        model=model,
        env_secret=AGENT_SECRET_NAME,
        checksum=checksum,
        checksum_annotation=CHECKSUM_ANNOTATION,
        config_map=CONFIG_MAP_NAME if settings.goose_config is not None else None,
        config_path=CONFIG_PATH,
        pull_secret=settings.image_pull_secret,
        cpu_request=settings.cpu_request,
        cpu_limit=settings.cpu_limit,
        memory_request=settings.memory_request,
        memory_limit=settings.memory_limit,
        **common,
    )


def render_project(
    settings: Settings,
    user_id: str,
    project_id: str,
    replicas: int,
    checksum: str | None = None,
    model: str | None = None,
) -> list[dict[str, Any]]:
    """A project's Deployment, Service and (when exposed) route, in apply order.

    `replicas` is the desired count stored in MongoDB; it is part of every apply so that
    applying the objects never undoes a scale. `checksum` is the agent environment's (see
    `render_agent`): a new one rolls the pod template.
    """
    name = object_name(project_id)
    common = _project_common(settings, user_id, project_id)
    objects = [
        render_deployment(settings, user_id, project_id, replicas, checksum, model),
        _render(
            "service.yaml.j2",
            selector=selector_labels(project_id),
            port_name=PORT_NAME,
            **common,
        ),
    ]
    kind = route_kind(settings)
    host = route_host(settings, user_id, project_id)
    if kind == "Ingress":
        objects.append(
            _render(
                "ingress.yaml.j2",
                host=host,
                service=name,
                ingress_class=settings.ingress_class,
                allow_cidrs=settings.route_allow_cidr_list(),
                **common,
            )
        )
    elif kind == "HTTPRoute":
        if not settings.gateway_name:
            raise ManifestError(
                f"{env_name('gateway_name')} must be set when "
                f"{env_name('exposure')}=httproute and {env_name('ingress_base_domain')} is set"
            )
        objects.append(
            _render(
                "httproute.yaml.j2",
                host=host,
                service=name,
                gateway_name=settings.gateway_name,
                gateway_namespace=settings.gateway_namespace,
                **common,
            )
        )
    return objects


def warm() -> None:
    """Compile every template once (tens of ms each), so no activation pays for it."""
    for template in sorted(p.name for p in templates_dir().glob("*.j2")):
        _environment().get_template(template)


def templates_dir() -> Path:
    """Where the templates are: inside the installed package, else the repository's top level.

    A wheel carries them as `gooseui/k8s_manifests`; a checkout (and an editable install)
    has them at the top of the repository, next to the package.
    """
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / TEMPLATES_DIRNAME, package.parent / TEMPLATES_DIRNAME):
        if candidate.is_dir():
            return candidate
    raise ManifestError(f"the manifest templates ({TEMPLATES_DIRNAME}/) are missing")


def _base_domain(settings: Settings) -> str | None:
    domain = (settings.ingress_base_domain or "").strip().strip(".")
    return domain or None


def _yaml_quote(value: Any) -> str:
    """`value` as a single-line JSON scalar that YAML reads back unchanged."""
    if isinstance(value, Undefined):
        str(value)  # StrictUndefined raises here, naming the missing variable
    text = json.dumps(value, ensure_ascii=False)
    return _NOT_PLAIN_ASCII.sub(
        lambda m: f"\\u{ord(m[0]):04x}" if ord(m[0]) <= 0xFFFF else f"\\U{ord(m[0]):08x}", text
    )


@lru_cache(maxsize=1)
def _environment() -> Environment:
    """One Environment for the process: it caches the parsed templates."""
    env = Environment(
        loader=FileSystemLoader(templates_dir()),
        undefined=StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["tojson"] = _yaml_quote
    return env


# libyaml's parser, where PyYAML was built with it: the pure-Python one takes 16 ms per
# Deployment, a stall of the event loop at every activation
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _render(template: str, **context: Any) -> dict[str, Any]:
    text = _environment().get_template(template).render(**context)
    obj = yaml.load(text, Loader=_LOADER)
    if not isinstance(obj, dict):
        raise ManifestError(f"{template} did not render to a YAML mapping")
    return obj
