"""The rendered Kubernetes objects (DESIGN section 5): valid, hardened, labelled, injection-proof.

Pure rendering: no cluster, no network. Built-in kinds are checked against the Kubernetes
OpenAPI schemas shipped by `kubernetes-validate` in strict mode (unknown fields fail).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from jinja2 import UndefinedError
from kubernetes_validate.utils import latest_version
from packaging.version import Version

from gooseui.cluster import manifests as m
from gooseui.config import Settings, load_settings

Obj = dict[str, Any]

UID = "alice"
PID = "k3x9q2ab"

# The newest Kubernetes release whose schemas the installed kubernetes-validate ships.
K8S_VERSION = latest_version()

COMBOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "ingress": {"ingress_base_domain": "goose.example.com", "ingress_class": "nginx"},
    "httproute": {
        "ingress_base_domain": "goose.example.com",
        "exposure": "httproute",
        "gateway_name": "shared-gateway",
        "gateway_namespace": "gateway-system",
    },
    "httproute-same-namespace-gateway": {
        "ingress_base_domain": "goose.example.com",
        "exposure": "httproute",
        "gateway_name": "shared-gateway",
    },
    "quota-secrets": {
        "quota_pods": 4,
        "quota_cpu": "4",
        "quota_memory": "8Gi",
        "image_pull_secret": "acr-pull",
        "goose_env_secret": "goose-env",
        "acr_image": "myacr.azurecr.io/goose-api:1.2.3",
    },
    "guard-rails-off": {
        "limit_range": False,
        "network_policy": False,
        "ingress_base_domain": "goose.example.com",
        "exposure": "none",
    },
}

CONSOLE_ENV_PREFIXES = (
    "GOOSEUI_",
    "KUBECONFIG",
    "ACR_IMAGE",
    "NAMESPACE_PREFIX",
    "INGRESS_BASE_DOMAIN",
    "MONGO_",
    "PROJECTS_COLLECTION",
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read the environment; the tests must see only what they pass."""
    for name in list(os.environ):
        if name.upper().startswith(CONSOLE_ENV_PREFIXES):
            monkeypatch.delenv(name)


def settings(**overrides: Any) -> Settings:
    return load_settings(**overrides)


def everything(s: Settings, replicas: int = 0) -> list[Obj]:
    return m.render_namespace(s, UID) + m.render_project(s, UID, PID, replicas)


def by_kind(objects: list[Obj]) -> dict[str, Obj]:
    kinds = [o["kind"] for o in objects]
    assert len(kinds) == len(set(kinds)), kinds
    return {o["kind"]: o for o in objects}


def deployment(s: Settings, replicas: int = 0) -> Obj:
    return by_kind(m.render_project(s, UID, PID, replicas))["Deployment"]


def container_of(dep: Obj) -> Obj:
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    return container


# --- schema validation -------------------------------------------------------------------


def test_kubernetes_version_is_current() -> None:
    assert Version(K8S_VERSION) >= Version("1.34")


_validated: set[str] = set()


def validate_builtin(obj: Obj) -> None:
    """Strict OpenAPI validation; identical objects across combinations are checked once."""
    key = json.dumps(obj, sort_keys=True)
    if key not in _validated:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        _validated.add(key)


# HTTPRoute is a CRD (Gateway API), which kubernetes-validate does not know. This is a
# trimmed copy, written for these tests, of the fields of gateway.networking.k8s.io/v1
# HTTPRoute that the template uses, with the CRD's required fields, patterns and bounds and
# no other field allowed, so a typo or a missing field fails here as on the API server.
_NAME = {"type": "string", "minLength": 1, "maxLength": 253}
_DNS_LABEL = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63}
_HOSTNAME = {
    "type": "string",
    "minLength": 1,
    "maxLength": 253,
    "pattern": r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
}
_DURATION = {"type": "string", "pattern": r"^([0-9]{1,5}(h|m|s|ms)){1,4}$"}
_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
_LABELS = {"type": "object", "additionalProperties": {"type": "string", "maxLength": 63}}


def _closed(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


HTTPROUTE_SCHEMA = _closed(
    {
        "apiVersion": {"const": "gateway.networking.k8s.io/v1"},
        "kind": {"const": "HTTPRoute"},
        "metadata": _closed(
            {"name": _NAME, "namespace": _DNS_LABEL, "labels": _LABELS}, ["name", "namespace"]
        ),
        "spec": _closed(
            {
                "parentRefs": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 32,
                    "items": _closed(
                        {
                            "group": {"type": "string"},
                            "kind": {"type": "string"},
                            "name": _NAME,
                            "namespace": _DNS_LABEL,
                            "sectionName": _DNS_LABEL,
                            "port": _PORT,
                        },
                        ["name"],
                    ),
                },
                "hostnames": {"type": "array", "maxItems": 16, "items": _HOSTNAME},
                "rules": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 16,
                    "items": _closed(
                        {
                            "matches": {
                                "type": "array",
                                "maxItems": 64,
                                "items": _closed(
                                    {
                                        "path": _closed(
                                            {
                                                "type": {
                                                    "enum": [
                                                        "Exact",
                                                        "PathPrefix",
                                                        "RegularExpression",
                                                    ]
                                                },
                                                "value": {
                                                    "type": "string",
                                                    "maxLength": 1024,
                                                    "pattern": "^/",
                                                },
                                            },
                                            ["type", "value"],
                                        )
                                    },
                                    [],
                                ),
                            },
                            "backendRefs": {
                                "type": "array",
                                "maxItems": 16,
                                "items": _closed(
                                    {
                                        "group": {"type": "string"},
                                        "kind": {"type": "string"},
                                        "name": _NAME,
                                        "namespace": _DNS_LABEL,
                                        "port": _PORT,
                                        "weight": {"type": "integer", "minimum": 0},
                                    },
                                    ["name", "port"],
                                ),
                            },
                            "timeouts": _closed(
                                {"request": _DURATION, "backendRequest": _DURATION}, []
                            ),
                        },
                        [],
                    ),
                },
            },
            ["parentRefs"],
        ),
    },
    ["apiVersion", "kind", "metadata", "spec"],
)
HTTPROUTE = jsonschema.Draft202012Validator(HTTPROUTE_SCHEMA)


def validate_object(obj: Obj) -> None:
    if obj["kind"] == "HTTPRoute":
        HTTPROUTE.validate(obj)
    else:
        validate_builtin(obj)


@pytest.mark.parametrize("combo", COMBOS)
def test_every_object_validates(combo: str) -> None:
    objects = everything(settings(**COMBOS[combo]), replicas=1)
    for obj in objects:
        validate_object(obj)
        meta = obj["metadata"]
        assert obj["apiVersion"] and obj["kind"] and meta["name"] and meta["labels"]
        if obj["kind"] == "Namespace":
            assert "namespace" not in meta
        else:
            assert meta["namespace"] == f"user-{UID}"


def test_strict_validation_rejects_unknown_field() -> None:
    """The validation above is not vacuous: a misspelt field fails."""
    dep = deployment(settings())
    dep["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, K8S_VERSION, strict=True)


def test_httproute_schema_is_well_formed() -> None:
    jsonschema.Draft202012Validator.check_schema(HTTPROUTE_SCHEMA)


@pytest.mark.parametrize(
    "breaks",
    [
        lambda r: r["spec"].pop("parentRefs"),
        lambda r: r["spec"]["rules"][0]["backendRefs"][0].pop("port"),
        lambda r: r["spec"]["hostnames"].append("Not_A_Host"),
        lambda r: r["spec"]["rules"][0].update(timeouts={"request": "forever"}),
        lambda r: r["spec"].update(hostname="typo"),
    ],
)
def test_httproute_schema_rejects_broken_routes(breaks: Callable[[Obj], Any]) -> None:
    s = settings(**COMBOS["httproute"])
    route = by_kind(m.render_project(s, UID, PID, 0))["HTTPRoute"]
    HTTPROUTE.validate(route)
    breaks(route)
    with pytest.raises(jsonschema.ValidationError):
        HTTPROUTE.validate(route)


# --- Pod Security `restricted` ------------------------------------------------------------

# Volume types the restricted profile allows (Pod Security Standards, "Volume Types").
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
SELINUX_TYPES = {
    None,
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
}


def restricted_violations(pod: Obj) -> list[str]:
    """The rules of the Pod Security `restricted` profile (which includes `baseline`)
    that `pod` (a pod spec) breaks; empty when the pod would be admitted."""
    found: list[str] = []
    pod_sc = pod.get("securityContext") or {}
    containers = [
        *(pod.get("initContainers") or []),
        *(pod.get("containers") or []),
        *(pod.get("ephemeralContainers") or []),
    ]
    if not pod.get("containers"):
        found.append("no containers")
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            found.append(f"{flag}")
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds or not kinds <= RESTRICTED_VOLUMES:
            found.append(f"volume {volume.get('name')} type {sorted(kinds)}")
    for sysctl in pod_sc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            found.append(f"sysctl {sysctl.get('name')}")
    if (pod_sc.get("seLinuxOptions") or {}).get("type") not in SELINUX_TYPES:
        found.append("pod seLinuxOptions.type")
    if pod_sc.get("runAsUser") == 0:
        found.append("pod runAsUser 0")
    if (pod_sc.get("windowsOptions") or {}).get("hostProcess"):
        found.append("pod hostProcess")
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in ("RuntimeDefault", "Localhost"):
        found.append(f"pod seccompProfile {pod_seccomp}")
    for c in containers:
        name = c.get("name")
        sc = c.get("securityContext") or {}
        caps = sc.get("capabilities") or {}
        if sc.get("privileged"):
            found.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation is not false")
        if "ALL" not in (caps.get("drop") or []):
            found.append(f"{name}: capabilities do not drop ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            found.append(f"{name}: adds capabilities {caps.get('add')}")
        if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
            found.append(f"{name}: runAsNonRoot is not true")
        if sc.get("runAsUser") == 0:
            found.append(f"{name}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{name}: seccompProfile {seccomp}")
        if sc.get("procMount") not in (None, "Default"):
            found.append(f"{name}: procMount {sc.get('procMount')}")
        if (sc.get("seLinuxOptions") or {}).get("type") not in SELINUX_TYPES:
            found.append(f"{name}: seLinuxOptions.type")
        if (sc.get("appArmorProfile") or {}).get("type") not in (
            None,
            "RuntimeDefault",
            "Localhost",
        ):
            found.append(f"{name}: appArmorProfile")
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            found.append(f"{name}: hostProcess")
        if any(p.get("hostPort") for p in c.get("ports") or []):
            found.append(f"{name}: hostPort")
    return found


@pytest.mark.parametrize("combo", COMBOS)
def test_pod_passes_restricted(combo: str) -> None:
    pod = deployment(settings(**COMBOS[combo]), replicas=1)["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []


def _container_sc(pod: Obj) -> Obj:
    return pod["containers"][0]["securityContext"]


@pytest.mark.parametrize(
    "breaks",
    [
        lambda p: p.update(hostNetwork=True),
        lambda p: p.update(hostPID=True),
        lambda p: p.update(hostIPC=True),
        lambda p: _container_sc(p).update(privileged=True),
        lambda p: _container_sc(p).pop("allowPrivilegeEscalation"),
        lambda p: _container_sc(p)["capabilities"].update(drop=["NET_RAW"]),
        lambda p: _container_sc(p)["capabilities"].update(add=["SYS_ADMIN"]),
        lambda p: _container_sc(p).update(runAsNonRoot=False),
        lambda p: _container_sc(p).update(runAsUser=0),
        lambda p: (_container_sc(p).pop("runAsNonRoot"), p["securityContext"].pop("runAsNonRoot")),
        lambda p: p["securityContext"].update(seccompProfile={"type": "Unconfined"}),
        lambda p: p["securityContext"].pop("seccompProfile"),
        lambda p: _container_sc(p).update(procMount="Unmasked"),
        lambda p: p["volumes"].append({"name": "host", "hostPath": {"path": "/"}}),
        lambda p: p["containers"][0]["ports"][0].update(hostPort=3001),
        lambda p: p["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]),
        lambda p: p.update(initContainers=[{"name": "init", "image": "busybox"}]),
    ],
)
def test_restricted_checker_catches_violations(breaks: Callable[[Obj], Any]) -> None:
    """The checker is not vacuous: each single violation of the profile is reported."""
    pod = copy.deepcopy(deployment(settings())["spec"]["template"]["spec"])
    breaks(pod)
    assert restricted_violations(pod)


def test_adding_net_bind_service_is_allowed() -> None:
    pod = copy.deepcopy(deployment(settings())["spec"]["template"]["spec"])
    _container_sc(pod)["capabilities"]["add"] = ["NET_BIND_SERVICE"]
    assert restricted_violations(pod) == []


def test_security_context_as_designed() -> None:
    pod = deployment(settings())["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "fsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    sc = _container_sc(pod)
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    # a read-only root still leaves a writable scratch directory, which is also HOME
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {}}]
    assert pod["containers"][0]["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert env["HOME"] == "/tmp"
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    assert pod["terminationGracePeriodSeconds"] == 10


# --- labels and names ---------------------------------------------------------------------

PROJECT_LABELS = {
    "app.kubernetes.io/name": "goose-api",
    "app.kubernetes.io/instance": f"proj-{PID}",
    "app.kubernetes.io/managed-by": "gooseui",
    "gooseui.io/user-id": UID,
    "gooseui.io/project-id": PID,
}
NAMESPACE_LABELS = {
    "app.kubernetes.io/name": "goose-api",
    "app.kubernetes.io/managed-by": "gooseui",
    "gooseui.io/user-id": UID,
}
POD_SECURITY_LABELS = {
    f"pod-security.kubernetes.io/{mode}{suffix}": value
    for mode in ("enforce", "warn", "audit")
    for suffix, value in (("", "restricted"), ("-version", "latest"))
}


def test_label_constants() -> None:
    assert m.labels(UID, PID) == PROJECT_LABELS
    assert (m.LABEL_NAME, m.LABEL_INSTANCE, m.LABEL_MANAGED_BY) == (
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/managed-by",
    )
    assert (m.LABEL_USER, m.LABEL_PROJECT) == ("gooseui.io/user-id", "gooseui.io/project-id")
    assert m.MANAGED_SELECTOR == "app.kubernetes.io/managed-by=gooseui"
    assert (
        m.pod_selector(PID)
        == f"app.kubernetes.io/instance=proj-{PID},app.kubernetes.io/name=goose-api"
    )


@pytest.mark.parametrize("combo", ["ingress", "httproute", "quota-secrets"])
def test_labels_on_every_object(combo: str) -> None:
    s = settings(**COMBOS[combo])
    for obj in m.render_project(s, UID, PID, 0):
        assert obj["metadata"]["labels"] == PROJECT_LABELS, obj["kind"]
    for obj in m.render_namespace(s, UID):
        extra = POD_SECURITY_LABELS if obj["kind"] == "Namespace" else {}
        assert obj["metadata"]["labels"] == NAMESPACE_LABELS | extra, obj["kind"]
    dep = deployment(s)
    assert dep["spec"]["template"]["metadata"]["labels"] == PROJECT_LABELS
    selector = {"app.kubernetes.io/instance": f"proj-{PID}", "app.kubernetes.io/name": "goose-api"}
    assert dep["spec"]["selector"] == {"matchLabels": selector}
    assert by_kind(m.render_project(s, UID, PID, 0))["Service"]["spec"]["selector"] == selector


def test_names() -> None:
    s = settings(namespace_prefix="team-")
    assert m.namespace_name(s, UID) == "team-alice"
    assert m.object_name(PID) == f"proj-{PID}-api"
    assert m.namespace_name(settings(), UID) == "user-alice"
    names = {o["kind"]: o["metadata"]["name"] for o in everything(s)}
    assert names == {
        "Namespace": "team-alice",
        "LimitRange": "gooseui-defaults",
        "NetworkPolicy": "gooseui-allow-goose",
        "Deployment": f"proj-{PID}-api",
        "Service": f"proj-{PID}-api",
    }


def test_apply_order() -> None:
    s = settings(**COMBOS["quota-secrets"], ingress_base_domain="example.com")
    assert [o["kind"] for o in m.render_namespace(s, UID)] == [
        "Namespace",
        "LimitRange",
        "ResourceQuota",
        "NetworkPolicy",
    ]
    assert [o["kind"] for o in m.render_project(s, UID, PID, 0)] == [
        "Deployment",
        "Service",
        "Ingress",
    ]


# --- Deployment and Service ---------------------------------------------------------------


@pytest.mark.parametrize("replicas", [0, 1])
def test_replicas_from_the_argument(replicas: int) -> None:
    assert deployment(settings(), replicas)["spec"]["replicas"] == replicas


@pytest.mark.parametrize("replicas", [-1, True, "1", 1.0])
def test_bad_replicas_refused(replicas: Any) -> None:
    with pytest.raises(m.ManifestError):
        m.render_project(settings(), UID, PID, replicas)


def test_deployment_as_designed() -> None:
    dep = deployment(settings())
    spec = dep["spec"]
    assert spec["strategy"] == {"type": "Recreate"}
    assert spec["revisionHistoryLimit"] == 2
    assert spec["progressDeadlineSeconds"] == 300
    c = container_of(dep)
    assert c["name"] == "goose-api"
    assert c["image"] == "goose-api:latest"
    assert "imagePullPolicy" not in c  # Kubernetes: Always for :latest, else IfNotPresent
    assert c["ports"] == [{"name": "http", "containerPort": 3001, "protocol": "TCP"}]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["USER_ID"] == UID
    assert env["PROJECT_ID"] == PID
    assert env["PORT"] == "3001"
    # one user's agents keep their sessions apart from every other user's
    assert env["MONGODB_DATABASE"] == f"goose_{UID}"
    # the image's entrypoint is replaced, so the port in the args is the one it listens on
    assert c["command"] == ["/usr/local/bin/goose"]
    assert c["args"] == ["api-server", "--host", "0.0.0.0", "--port", "3001"]
    for probe in ("startupProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/api/v1/health", "port": "http"}, probe
    # the health endpoint answers 503 when MongoDB blips: that must not restart the agent
    assert c["livenessProbe"]["tcpSocket"] == {"port": "http"}
    assert "httpGet" not in c["livenessProbe"]
    startup = c["startupProbe"]
    # the pod gets at least as long to start as the console waits for it
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    assert c["resources"] == {
        "requests": {"cpu": "250m", "memory": "256Mi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }
    assert c["envFrom"] == [{"secretRef": {"name": "gooseui-agent-env"}}]
    assert "imagePullSecrets" not in spec["template"]["spec"]
    assert "annotations" not in spec["template"]["metadata"]
    assert [v["name"] for v in spec["template"]["spec"]["volumes"]] == ["tmp"]


def test_deployment_secrets_and_resources_from_settings() -> None:
    s = settings(
        goose_env_secret="goose-env",
        image_pull_secret="acr-pull",
        cpu_request="100m",
        cpu_limit="2",
        memory_request="128Mi",
        memory_limit="2Gi",
        goose_port=8080,
    )
    dep = deployment(s)
    c = container_of(dep)
    # the pod reads the console's copy in its namespace, not the source Secret
    assert c["envFrom"] == [{"secretRef": {"name": "gooseui-agent-env"}}]
    assert dep["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "acr-pull"}]
    assert c["args"] == ["api-server", "--host", "0.0.0.0", "--port", "8080"]
    assert c["resources"] == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"cpu": "2", "memory": "2Gi"},
    }
    assert c["ports"][0]["containerPort"] == 8080
    service = by_kind(m.render_project(s, UID, PID, 0))["Service"]
    assert service["spec"]["ports"] == [
        {"name": "http", "protocol": "TCP", "port": 8080, "targetPort": "http"}
    ]


def test_agent_settings_reach_the_pod(tmp_path: Any) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("extensions:\n  developer: {enabled: true, type: builtin}\n")
    s = settings(
        agent_database="agents_{user_id}_{project_id}",
        goose_args="api-server --port {port} --host 0.0.0.0 --verbose",
        goose_command="goose",
        goose_config=str(config),
    )
    dep = by_kind(m.render_project(s, UID, PID, 1, checksum="abc123"))["Deployment"]
    template = dep["spec"]["template"]
    assert template["metadata"]["annotations"] == {"gooseui.io/agent-env-checksum": "abc123"}
    c = container_of(dep)
    assert c["command"] == ["goose"]
    assert c["args"] == ["api-server", "--port", "3001", "--host", "0.0.0.0", "--verbose"]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["MONGODB_DATABASE"] == f"agents_{UID}_{PID}"
    mount = next(v for v in c["volumeMounts"] if v["name"] == "goose-config")
    assert mount == {
        "name": "goose-config",
        "mountPath": "/tmp/.config/goose/config.yaml",
        "subPath": "config.yaml",
        "readOnly": True,
    }
    volume = next(v for v in template["spec"]["volumes"] if v["name"] == "goose-config")
    assert volume["configMap"] == {"name": "gooseui-goose-config"}
    validate_object(dep)


def test_agent_objects() -> None:
    s = settings(image_pull_secret="acr-pull")
    objects = m.render_agent(
        s,
        UID,
        {"MONGODB_URL": "bW9uZ28=", "GOOSE_MODE": "YXV0bw=="},
        "file agent.env",
        config="extensions: {}\n",
        pull_secret={
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": "e30="},
        },
    )
    secret, pull, config = objects
    assert (secret["kind"], secret["metadata"]["name"]) == ("Secret", "gooseui-agent-env")
    assert secret["metadata"]["namespace"] == "user-alice"
    assert secret["type"] == "Opaque"
    assert secret["data"] == {"MONGODB_URL": "bW9uZ28=", "GOOSE_MODE": "YXV0bw=="}
    assert secret["metadata"]["annotations"] == {"gooseui.io/source": "file agent.env"}
    assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "gooseui"
    assert (pull["metadata"]["name"], pull["type"]) == (
        "acr-pull",
        "kubernetes.io/dockerconfigjson",
    )
    assert pull["data"] == {".dockerconfigjson": "e30="}
    assert config["kind"] == "ConfigMap"
    assert config["data"] == {"config.yaml": "extensions: {}\n"}
    for obj in objects:
        validate_object(obj)


def test_network_policy_admits_apiserver_cidrs() -> None:
    s = settings(apiserver_cidrs="10.224.0.4, 172.16.0.0/28")
    policy = by_kind(m.render_namespace(s, UID))["NetworkPolicy"]
    peers = policy["spec"]["ingress"][0]["from"]
    assert peers[1:] == [
        {"ipBlock": {"cidr": "10.224.0.4/32"}},
        {"ipBlock": {"cidr": "172.16.0.0/28"}},
    ]
    validate_object(policy)


def test_ingress_allow_list() -> None:
    s = settings(
        ingress_base_domain="goose.example.com", route_allow_cidrs="203.0.113.0/24,198.51.100.7"
    )
    ingress = by_kind(m.render_project(s, UID, PID, 0))["Ingress"]
    notes = ingress["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/whitelist-source-range"] == (
        "203.0.113.0/24,198.51.100.7/32"
    )
    open_ingress = by_kind(m.render_project(settings(ingress_base_domain="x.io"), UID, PID, 0))
    assert (
        "nginx.ingress.kubernetes.io/whitelist-source-range"
        not in (open_ingress["Ingress"]["metadata"]["annotations"])
    )


@pytest.mark.parametrize(("timeout", "deadline"), [(5, 30), (30, 30), (600.5, 601)])
def test_progress_deadline_from_activation_timeout(timeout: float, deadline: int) -> None:
    dep = deployment(settings(activation_timeout=timeout))
    assert dep["spec"]["progressDeadlineSeconds"] == deadline


def test_service_as_designed() -> None:
    service = by_kind(m.render_project(settings(), UID, PID, 0))["Service"]
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {"name": "http", "protocol": "TCP", "port": 3001, "targetPort": "http"}
    ]


# --- routes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "kind"),
    [
        ({}, None),
        ({"exposure": "httproute", "gateway_name": "gw"}, None),
        ({"ingress_base_domain": "example.com"}, "Ingress"),
        ({"ingress_base_domain": "  "}, None),
        ({"ingress_base_domain": "example.com", "exposure": "none"}, None),
        (
            {"ingress_base_domain": "example.com", "exposure": "httproute", "gateway_name": "g"},
            "HTTPRoute",
        ),
    ],
)
def test_route_presence(overrides: dict[str, Any], kind: str | None) -> None:
    s = settings(**overrides)
    assert m.route_kind(s) == kind
    kinds = [o["kind"] for o in m.render_project(s, UID, PID, 0)]
    assert kinds == ["Deployment", "Service"] + ([kind] if kind else [])
    host = m.route_host(s, UID, PID)
    assert (host is None) == (kind is None)


@pytest.mark.parametrize(
    "domain", ["goose.example.com", ".goose.example.com", "goose.example.com."]
)
def test_route_host_format(domain: str) -> None:
    s = settings(ingress_base_domain=domain, namespace_prefix="u-")
    assert m.route_host(s, UID, PID) == f"proj-{PID}.u-alice.goose.example.com"


def test_ingress_as_designed() -> None:
    s = settings(ingress_base_domain="goose.example.com", ingress_class="internal-nginx")
    ingress = by_kind(m.render_project(s, UID, PID, 0))["Ingress"]
    assert ingress["apiVersion"] == "networking.k8s.io/v1"
    assert ingress["metadata"]["name"] == f"proj-{PID}-api"
    assert ingress["spec"]["ingressClassName"] == "internal-nginx"
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == f"proj-{PID}.user-alice.goose.example.com"
    assert rule["http"]["paths"] == [
        {
            "path": "/",
            "pathType": "Prefix",
            "backend": {"service": {"name": f"proj-{PID}-api", "port": {"number": 3001}}},
        }
    ]
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"
    assert annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"] == "3600"
    assert annotations["nginx.ingress.kubernetes.io/proxy-http-version"] == "1.1"
    # the same for NGINX Inc's controller, which reads its own prefix
    assert annotations["nginx.org/proxy-buffering"] == "False"
    assert annotations["nginx.org/proxy-read-timeout"] == "3600s"


@pytest.mark.parametrize("gateway_namespace", [None, "gateway-system"])
def test_httproute_as_designed(gateway_namespace: str | None) -> None:
    s = settings(
        ingress_base_domain="goose.example.com",
        exposure="httproute",
        gateway_name="shared",
        gateway_namespace=gateway_namespace,
    )
    route = by_kind(m.render_project(s, UID, PID, 0))["HTTPRoute"]
    parent = {"name": "shared"} | ({"namespace": gateway_namespace} if gateway_namespace else {})
    assert route["spec"]["parentRefs"] == [parent]
    assert route["spec"]["hostnames"] == [f"proj-{PID}.user-alice.goose.example.com"]
    (rule,) = route["spec"]["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert rule["backendRefs"] == [{"kind": "Service", "name": f"proj-{PID}-api", "port": 3001}]
    assert rule["timeouts"] == {"request": "0s"}


def test_httproute_needs_a_gateway() -> None:
    s = settings(ingress_base_domain="example.com", exposure="httproute")
    with pytest.raises(m.ManifestError, match="GOOSEUI_GATEWAY_NAME"):
        m.render_project(s, UID, PID, 0)


# --- namespace guard rails ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "namespaces"),
    [
        ({}, ["gooseui", "ingress-nginx", "kube-system"]),
        ({"endpoint_mode": "service"}, ["gooseui", "ingress-nginx"]),
        (
            {"endpoint_mode": "proxy", "apiserver_namespace": "konn"},
            ["gooseui", "ingress-nginx", "konn"],
        ),
        (
            {"console_namespace": "ops", "ingress_namespace": "edge", "endpoint_mode": "ingress"},
            ["ops", "edge"],
        ),
        (
            {"exposure": "httproute", "gateway_namespace": "gw-system", "endpoint_mode": "service"},
            ["gooseui", "gw-system"],
        ),
        ({"exposure": "httproute", "endpoint_mode": "service"}, ["gooseui", "ingress-nginx"]),
        (
            {"gateway_namespace": "gw-system", "endpoint_mode": "service"},
            ["gooseui", "ingress-nginx"],
        ),
        ({"ingress_namespace": "gooseui", "endpoint_mode": "service"}, ["gooseui"]),
    ],
)
def test_network_policy_namespaces(overrides: dict[str, Any], namespaces: list[str]) -> None:
    policy = by_kind(m.render_namespace(settings(**overrides), UID))["NetworkPolicy"]
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "goose-api"}}
    assert spec["policyTypes"] == ["Ingress"]
    (rule,) = spec["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 3001}]
    assert rule["from"] == [
        {
            "namespaceSelector": {
                "matchExpressions": [
                    {"key": "kubernetes.io/metadata.name", "operator": "In", "values": namespaces}
                ]
            }
        }
    ]


def test_guard_rails_follow_settings() -> None:
    assert [o["kind"] for o in m.render_namespace(settings(), UID)] == [
        "Namespace",
        "LimitRange",
        "NetworkPolicy",
    ]
    off = settings(limit_range=False, network_policy=False)
    assert [o["kind"] for o in m.render_namespace(off, UID)] == ["Namespace"]
    namespace = m.render_namespace(off, UID)[0]
    assert namespace["metadata"]["name"] == "user-alice"


def test_limit_range_defaults_from_settings() -> None:
    s = settings(cpu_request="100m", cpu_limit="500m", memory_request="64Mi", memory_limit="1Gi")
    limits = by_kind(m.render_namespace(s, UID))["LimitRange"]["spec"]["limits"]
    assert limits == [
        {
            "type": "Container",
            "defaultRequest": {"cpu": "100m", "memory": "64Mi"},
            "default": {"cpu": "500m", "memory": "1Gi"},
        }
    ]


@pytest.mark.parametrize(
    ("overrides", "hard"),
    [
        ({"quota_pods": 0}, {"pods": "0"}),
        ({"quota_cpu": "2"}, {"requests.cpu": "2", "limits.cpu": "2"}),
        ({"quota_memory": "4Gi"}, {"requests.memory": "4Gi", "limits.memory": "4Gi"}),
        (
            {"quota_pods": 3, "quota_cpu": "1500m", "quota_memory": "3Gi"},
            {
                "pods": "3",
                "requests.cpu": "1500m",
                "limits.cpu": "1500m",
                "requests.memory": "3Gi",
                "limits.memory": "3Gi",
            },
        ),
    ],
)
def test_quota_only_what_is_set(overrides: dict[str, Any], hard: dict[str, str]) -> None:
    quota = by_kind(m.render_namespace(settings(**overrides), UID))["ResourceQuota"]
    assert quota["metadata"]["name"] == "gooseui-quota"
    assert quota["spec"] == {"hard": hard}


# --- injection ----------------------------------------------------------------------------

HOSTILE = [
    'evil"\nfoo: bar',
    "evil\nfoo: bar",
    "x: {a: b}",
    "- item",
    "&anchor *alias !!python/object:os.system",
    "'single' \"double\" \\ back # not a comment",
    "tab\there, nul-ish \x7f, nel \x85, line sep \u2028, emoji \U0001f600",
    "{{ not_a_template }}",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_settings_values_cannot_inject(value: str) -> None:
    s = Settings(
        acr_image=value,
        ingress_class=value,
        goose_env_secret=value,
        image_pull_secret=value,
        cpu_request=value,
        quota_memory=value,
        console_namespace=value,
        goose_command=value,
        ingress_base_domain="example.com",
    )
    reference = everything(
        settings(
            ingress_base_domain="example.com",
            quota_memory="1Gi",
            goose_env_secret="env",
            image_pull_secret="pull",
        )
    )
    objects = everything(s)
    # the same objects with the same fields: only the values differ
    assert [sorted(o) for o in objects] == [sorted(o) for o in reference]
    kinds = by_kind(objects)
    c = container_of(kinds["Deployment"])
    assert sorted(c) == sorted(container_of(by_kind(reference)["Deployment"]))
    assert c["image"] == value
    assert c["command"] == [value]
    assert c["resources"]["requests"]["cpu"] == value
    assert kinds["Deployment"]["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": value}]
    assert kinds["Ingress"]["spec"]["ingressClassName"] == value
    assert kinds["ResourceQuota"]["spec"]["hard"]["limits.memory"] == value
    rule = kinds["NetworkPolicy"]["spec"]["ingress"][0]["from"][0]
    assert rule["namespaceSelector"]["matchExpressions"][0]["values"] == [
        value,
        "ingress-nginx",
        "kube-system",
    ]
    (secret,) = m.render_agent(s, UID, {"K": value}, value)
    assert secret["data"] == {"K": value}
    assert secret["metadata"]["annotations"]["gooseui.io/source"] == value


def test_gateway_values_cannot_inject() -> None:
    value = 'gw"\n  sectionName: https'
    s = Settings(
        ingress_base_domain="example.com",
        exposure="httproute",
        gateway_name=value,
        gateway_namespace=value,
    )
    route = by_kind(m.render_project(s, UID, PID, 0))["HTTPRoute"]
    assert route["spec"]["parentRefs"] == [{"name": value, "namespace": value}]


@pytest.mark.parametrize("bad", ['alice"\nfoo: bar', "Alice", "a_b", "", "-a", "a" * 64])
def test_ids_must_be_dns_labels(bad: str) -> None:
    s = settings(ingress_base_domain="example.com")
    with pytest.raises(m.ManifestError):
        m.render_namespace(s, bad)
    with pytest.raises(m.ManifestError):
        m.render_project(s, bad, PID, 0)
    with pytest.raises(m.ManifestError):
        m.render_project(s, UID, bad, 0)
    with pytest.raises(m.ManifestError):
        m.route_host(s, bad, PID)


def test_namespace_name_length_is_bounded() -> None:
    s = settings(namespace_prefix="p" * 40)
    with pytest.raises(m.ManifestError, match="longer than 63"):
        m.namespace_name(s, "u" * 24)
    assert m.namespace_name(s, "u" * 23) == "p" * 40 + "u" * 23


# --- the template machinery ---------------------------------------------------------------


def test_templates_found_and_environment_cached() -> None:
    folder = m.templates_dir()
    assert {p.name for p in folder.glob("*.yaml.j2")} == {
        f"{kind}.yaml.j2"
        for kind in (
            "namespace",
            "limitrange",
            "resourcequota",
            "networkpolicy",
            "deployment",
            "service",
            "ingress",
            "httproute",
            "agent-secret",
            "goose-config",
        )
    }
    assert m._environment() is m._environment()


def test_missing_template_variable_fails_loudly() -> None:
    """StrictUndefined: a forgotten value is an error, never an empty field."""
    with pytest.raises(UndefinedError):
        m._render("service.yaml.j2", name="x", namespace="y", labels={}, port=1)
