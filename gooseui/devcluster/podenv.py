"""What the kubelet resolves before it starts a container: environment and volume files.

A real kubelet builds a container's environment at every start: Service links, then
`envFrom` (Secrets and ConfigMaps, `prefix`, `optional`), then `env` (`$(VAR)` expansion,
`valueFrom` references, the downward API) overriding it; a missing non-optional
reference fails the start with `CreateContainerConfigError`. Volumes are set up before
that: a missing ConfigMap or Secret keeps the pod `ContainerCreating` with `FailedMount`.
The console's agent depends on both (its Secret, its config.yaml), so the simulator
resolves them with the kubelet's rules and error texts and hands the result to the agent.
"""

from __future__ import annotations

import math
import posixpath
import re
from typing import TYPE_CHECKING, Any

from . import configdata
from .admission import parse_quantity
from .resources import CONFIGMAPS, SECRETS, SERVICES

if TYPE_CHECKING:
    from .registry import Registry

Obj = dict[str, Any]
Volumes = dict[str, dict[str, str] | None]  # volume name -> relative path -> content (None: not a
# ConfigMap/Secret/projected/downwardAPI volume, e.g. emptyDir)

_LABEL_REF = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


class ConfigError(Exception):
    """A container's configuration cannot be generated (CreateContainerConfigError)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MountError(Exception):
    """A volume cannot be set up (FailedMount)."""

    def __init__(self, volume: str, message: str) -> None:
        super().__init__(message)
        self.volume = volume
        self.message = message

    def event(self) -> str:
        return f'MountVolume.SetUp failed for volume "{self.volume}" : {self.message}'


def expand(value: str, lookup: dict[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: `$$` escapes, unknown references stay as written."""
    out: list[str] = []
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if ch == "$" and i + 1 < n:
            nxt = value[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                close = value.find(")", i + 2)
                if close != -1:
                    name = value[i + 2 : close]
                    out.append(lookup[name] if name in lookup else f"$({name})")
                    i = close + 1
                    continue
                out.append("$(")
                i += 2
                continue
            out.append("$" + nxt)
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def service_env(services: list[Obj]) -> dict[str, str]:
    """Docker-link style variables of Services (FromServices): `<NAME>_SERVICE_HOST`, ..."""
    env: dict[str, str] = {}
    for svc in services:
        spec = svc.get("spec") or {}
        ip = spec.get("clusterIP")
        ports = spec.get("ports") or []
        if not ip or ip == "None" or not ports:
            continue
        name = svc["metadata"]["name"].upper().replace("-", "_")
        first = ports[0]
        env[f"{name}_SERVICE_HOST"] = ip
        env[f"{name}_SERVICE_PORT"] = str(first.get("port"))
        for port in ports:
            if port.get("name"):
                env[f"{name}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(
                    port.get("port")
                )
        proto = str(first.get("protocol", "TCP")).lower()
        env[f"{name}_PORT"] = f"{proto}://{ip}:{first.get('port')}"
        for port in ports:
            protocol = str(port.get("protocol", "TCP"))
            prefix = f"{name}_PORT_{port.get('port')}_{protocol.upper()}"
            env[prefix] = f"{protocol.lower()}://{ip}:{port.get('port')}"
            env[prefix + "_PROTO"] = protocol.lower()
            env[prefix + "_PORT"] = str(port.get("port"))
            env[prefix + "_ADDR"] = ip
    return env


def field_value(pod: Obj, path: str) -> str:
    """A downward-API `fieldRef` value."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    if m := _LABEL_REF.match(path):
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        values = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": status.get("hostIP", ""),
        "status.podIP": status.get("podIP", ""),
        "status.hostIPs": ",".join(a.get("ip", "") for a in status.get("hostIPs") or []),
        "status.podIPs": ",".join(a.get("ip", "") for a in status.get("podIPs") or []),
    }
    if path not in simple:
        raise ConfigError(f"unsupported fieldRef fieldPath: {path}")
    return str(simple[path])


_NODE_ALLOCATABLE = {"cpu": "8", "memory": "16Gi", "ephemeral-storage": "100Gi"}


def resource_value(container: Obj, ref: Obj) -> str:
    """A downward-API `resourceFieldRef` value (limits default to node allocatable)."""
    resource = str(ref.get("resource", ""))
    kind, _, name = resource.partition(".")
    resources = container.get("resources") or {}
    raw = (resources.get(kind) or {}).get(name)
    if raw is None and kind == "limits":
        raw = _NODE_ALLOCATABLE.get(name)
    if raw is None:
        raw = "0"
    divisor = parse_quantity(ref.get("divisor") or "1") or 1.0
    amount = parse_quantity(raw)
    return str(math.ceil(amount / divisor))


def _find(registry: Registry, res: Any, namespace: str, name: str) -> Obj | None:
    return registry.find(res, namespace, name)


def resolve_env(
    registry: Registry, pod: Obj, container: Obj, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """The container's environment as the process sees it (raises `ConfigError`).

    `extra` are the variables the runtime sets before the pod's (e.g. HOSTNAME).
    """
    ns = pod["metadata"].get("namespace", "")
    spec = pod.get("spec") or {}
    services: list[Obj] = []
    master = _find(registry, SERVICES, "default", "kubernetes")
    if master is not None:
        services.append(master)
    if spec.get("enableServiceLinks", True):
        services += [
            s
            for s in registry.store.list(SERVICES.key, ns)
            if not (ns == "default" and s["metadata"]["name"] == "kubernetes")
        ]
    links = service_env(services)
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix") or ""
        if source.get("configMapRef") is not None:
            ref = source["configMapRef"]
            cm = _find(registry, CONFIGMAPS, ns, ref.get("name", ""))
            if cm is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'configmap "{ref.get("name", "")}" not found')
            for key, value in (cm.get("data") or {}).items():
                env[prefix + key] = value
        elif source.get("secretRef") is not None:
            ref = source["secretRef"]
            secret = _find(registry, SECRETS, ns, ref.get("name", ""))
            if secret is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'secret "{ref.get("name", "")}" not found')
            for key, value in configdata.secret_items(secret).items():
                env[prefix + key] = value
    for var in container.get("env") or []:
        name = var.get("name", "")
        source = var.get("valueFrom")
        if not source:
            lookup = {**links, **env}
            env[name] = expand(str(var.get("value", "")), lookup)
            continue
        if source.get("fieldRef"):
            env[name] = field_value(pod, source["fieldRef"].get("fieldPath", ""))
        elif source.get("resourceFieldRef"):
            env[name] = resource_value(container, source["resourceFieldRef"])
        elif source.get("configMapKeyRef"):
            ref = source["configMapKeyRef"]
            cm = _find(registry, CONFIGMAPS, ns, ref.get("name", ""))
            if cm is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'configmap "{ref.get("name", "")}" not found')
            value = (cm.get("data") or {}).get(ref.get("key", ""))
            if value is None:
                if ref.get("optional"):
                    continue
                key, cm_name = ref.get("key", ""), ref.get("name", "")
                raise ConfigError(f"couldn't find key {key} in ConfigMap {ns}/{cm_name}")
            env[name] = value
        elif source.get("secretKeyRef"):
            ref = source["secretKeyRef"]
            secret = _find(registry, SECRETS, ns, ref.get("name", ""))
            if secret is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'secret "{ref.get("name", "")}" not found')
            value = configdata.secret_value(secret, ref.get("key", ""))
            if value is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(
                    f"couldn't find key {ref.get('key', '')} in Secret {ns}/{ref.get('name', '')}"
                )
            env[name] = value
    for key, value in links.items():
        env.setdefault(key, value)
    if extra:
        for key, value in extra.items():
            env.setdefault(key, value)
    return env


def _project(
    files: dict[str, str], items: list[Obj] | None, optional: bool, missing: str
) -> dict[str, str]:
    if not items:
        return dict(files)
    out: dict[str, str] = {}
    for item in items:
        key = item.get("key", "")
        if key not in files:
            if optional:
                continue
            raise ValueError(f"{missing}: {key}")
        out[item.get("path") or key] = files[key]
    return out


def _configmap_volume(registry: Registry, ns: str, source: Obj) -> dict[str, str]:
    name = source.get("name", "")
    cm = _find(registry, CONFIGMAPS, ns, name)
    if cm is None:
        if source.get("optional"):
            return {}
        raise ValueError(f'configmap "{name}" not found')
    return _project(
        configdata.configmap_files(cm),
        source.get("items"),
        bool(source.get("optional")),
        "configmap references non-existent config key",
    )


def _secret_volume(registry: Registry, ns: str, source: Obj, name_field: str) -> dict[str, str]:
    name = source.get(name_field, "")
    secret = _find(registry, SECRETS, ns, name)
    if secret is None:
        if source.get("optional"):
            return {}
        raise ValueError(f'secret "{name}" not found')
    return _project(
        configdata.secret_items(secret),
        source.get("items"),
        bool(source.get("optional")),
        "secret references non-existent secret key",
    )


def _downward_volume(pod: Obj, source: Obj) -> dict[str, str]:
    out = {}
    for item in source.get("items") or []:
        if item.get("fieldRef"):
            out[item.get("path", "")] = field_value(pod, item["fieldRef"].get("fieldPath", ""))
    return out


def resolve_volumes(registry: Registry, pod: Obj) -> Volumes:
    """Set up every volume of the pod (raises `MountError` for the first that fails)."""
    ns = pod["metadata"].get("namespace", "")
    volumes: Volumes = {}
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        name = volume.get("name", "")
        try:
            if volume.get("configMap") is not None:
                volumes[name] = _configmap_volume(registry, ns, volume["configMap"])
            elif volume.get("secret") is not None:
                volumes[name] = _secret_volume(registry, ns, volume["secret"], "secretName")
            elif volume.get("downwardAPI") is not None:
                volumes[name] = _downward_volume(pod, volume["downwardAPI"])
            elif volume.get("projected") is not None:
                files: dict[str, str] = {}
                for src in volume["projected"].get("sources") or []:
                    if src.get("configMap") is not None:
                        files.update(_configmap_volume(registry, ns, src["configMap"]))
                    elif src.get("secret") is not None:
                        files.update(_secret_volume(registry, ns, src["secret"], "name"))
                    elif src.get("downwardAPI") is not None:
                        files.update(_downward_volume(pod, src["downwardAPI"]))
                volumes[name] = files
            else:
                volumes[name] = None
        except ValueError as exc:
            raise MountError(name, str(exc)) from None
        except ConfigError as exc:
            raise MountError(name, exc.message) from None
    return volumes


def container_files(container: Obj, volumes: Volumes, env: dict[str, str]) -> dict[str, str]:
    """Absolute path -> content of the ConfigMap/Secret files this container mounts."""
    files: dict[str, str] = {}
    for mount in container.get("volumeMounts") or []:
        content = volumes.get(mount.get("name", ""))
        if content is None:
            continue
        target = mount.get("mountPath", "")
        sub = mount.get("subPath") or ""
        if mount.get("subPathExpr"):
            sub = expand(mount["subPathExpr"], env)
        if sub:
            sub = posixpath.normpath(sub)
            if sub in content:
                files[target] = content[sub]
                continue
            inside = {p: v for p, v in content.items() if p.startswith(sub + "/")}
            if not inside:
                # the kubelet would create the subPath in a read-only volume: the start fails
                raise ConfigError(
                    f'failed to prepare subPath for volumeMount "{mount.get("name", "")}" of '
                    f'container "{container.get("name", "")}"'
                )
            for path, value in inside.items():
                files[posixpath.join(target, path[len(sub) + 1 :])] = value
            continue
        for path, value in content.items():
            files[posixpath.join(target, path)] = value
    return files
