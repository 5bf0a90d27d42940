"""Defaulting and validation the real API server applies before storing an object.

Clients read defaults back (a Deployment's strategy, a Service's clusterIP, a
container's imagePullPolicy) and rely on validation errors (422 with causes), so
the simulator fills and checks the same fields for its kinds.
"""

from __future__ import annotations

import re
from typing import Any

from . import configdata, gateway, netpol
from .errors import ApiError, invalid
from .resources import Resource
from .selectors import selector_object_matches

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

MSG_LABEL = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
    "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
MSG_SUBDOMAIN = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
    "or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex "
    r"used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
MSG_DNS1035 = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
    "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)

Cause = tuple[str, str, str]


def name_problem(resource: Resource, name: str) -> str | None:
    """Why `name` is not a valid object name for `resource`, or None."""
    if resource.plural in ("namespaces",):
        if len(name) > 63:
            return "must be no more than 63 characters"
        return None if _LABEL.match(name) else MSG_LABEL
    if resource.plural == "services":
        if len(name) > 63:
            return "must be no more than 63 characters"
        return None if _DNS1035.match(name) else MSG_DNS1035
    if len(name) > 253:
        return "must be no more than 253 characters"
    return None if _SUBDOMAIN.match(name) else MSG_SUBDOMAIN


def is_dns_label(value: str) -> bool:
    return len(value) <= 63 and bool(_LABEL.match(value))


def _quote(value: Any) -> str:
    return '"' + str(value).replace('"', '\\"') + '"'


def validate(resource: Resource, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    """Raise 422 Invalid with causes when `obj` would be rejected by the API server."""
    meta = obj.get("metadata") or {}
    name = meta.get("name", "")
    causes: list[Cause] = []
    if not name:
        causes.append(
            (
                "FieldValueRequired",
                "metadata.name",
                "Required value: name or generateName is required",
            )
        )
    elif problem := name_problem(resource, name):
        causes.append(
            ("FieldValueInvalid", "metadata.name", f"Invalid value: {_quote(name)}: {problem}")
        )
    for value in (meta.get("labels") or {}).values():
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            causes.append(
                (
                    "FieldValueInvalid",
                    "metadata.labels",
                    f"Invalid value: {_quote(value)}: a valid label must be an empty string or "
                    "consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                    "with an alphanumeric character",
                )
            )
    check = _VALIDATORS.get(resource.plural)
    if check:
        causes += check(obj, old)
    if causes:
        raise invalid(resource.kind, resource.group, name, causes)


def _validate_pod_spec(spec: Any, prefix: str) -> list[Cause]:
    causes: list[Cause] = []
    if not isinstance(spec, dict):
        return [("FieldValueRequired", prefix, "Required value")]
    containers = spec.get("containers")
    if not containers:
        return [("FieldValueRequired", f"{prefix}.containers", "Required value")]
    seen: set[str] = set()
    causes, volumes = _validate_volumes(spec, prefix)
    for n, container in enumerate(containers):
        where = f"{prefix}.containers[{n}]"
        if isinstance(container, dict):
            causes += _validate_container_refs(container, where, volumes)
        cname = container.get("name", "") if isinstance(container, dict) else ""
        if not cname:
            causes.append(("FieldValueRequired", f"{where}.name", "Required value"))
        elif not is_dns_label(cname):
            causes.append(
                (
                    "FieldValueInvalid",
                    f"{where}.name",
                    f"Invalid value: {_quote(cname)}: {MSG_LABEL}",
                )
            )
        elif cname in seen:
            causes.append(
                ("FieldValueDuplicate", f"{where}.name", f"Duplicate value: {_quote(cname)}")
            )
        seen.add(cname)
        if not (container.get("image") if isinstance(container, dict) else None):
            causes.append(("FieldValueRequired", f"{where}.image", "Required value"))
        for p, port in enumerate(
            container.get("ports") or [] if isinstance(container, dict) else []
        ):
            number = port.get("containerPort") if isinstance(port, dict) else None
            if not isinstance(number, int) or not 0 < number < 65536:
                causes.append(
                    (
                        "FieldValueInvalid",
                        f"{where}.ports[{p}].containerPort",
                        f"Invalid value: {number}: must be between 1 and 65535, inclusive",
                    )
                )
    return causes


_FIELD_PATHS = (
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
)
_ENV_FIELD_PATHS = tuple(
    p for p in _FIELD_PATHS if p not in ("metadata.annotations", "metadata.labels")
)
_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['.+'\]$")
_VOLUME_SOURCES = (
    "configMap",
    "secret",
    "emptyDir",
    "projected",
    "downwardAPI",
    "hostPath",
    "persistentVolumeClaim",
    "csi",
    "ephemeral",
    "nfs",
    "image",
)


def _validate_volumes(spec: dict[str, Any], prefix: str) -> tuple[list[Cause], set[str]]:
    causes: list[Cause] = []
    names: set[str] = set()
    for n, volume in enumerate(spec.get("volumes") or []):
        where = f"{prefix}.volumes[{n}]"
        if not isinstance(volume, dict):
            continue
        name = volume.get("name", "")
        if not name:
            causes.append(("FieldValueRequired", f"{where}.name", "Required value"))
        elif name in names:
            causes.append(
                ("FieldValueDuplicate", f"{where}.name", f"Duplicate value: {_quote(name)}")
            )
        names.add(name)
        sources = [k for k in _VOLUME_SOURCES if volume.get(k) is not None]
        if not sources:
            causes.append(
                ("FieldValueRequired", where, "Required value: must specify a volume type")
            )
        elif len(sources) > 1:
            causes.append(
                (
                    "FieldValueForbidden",
                    f"{where}.{sources[1]}",
                    "Forbidden: may not specify more than 1 volume type",
                )
            )
        if volume.get("configMap") is not None and not (volume["configMap"] or {}).get("name"):
            causes.append(("FieldValueRequired", f"{where}.configMap.name", "Required value"))
        if volume.get("secret") is not None and not (volume["secret"] or {}).get("secretName"):
            causes.append(("FieldValueRequired", f"{where}.secret.secretName", "Required value"))
    return causes, names


def _validate_container_refs(
    container: dict[str, Any], where: str, volumes: set[str]
) -> list[Cause]:
    """volumeMounts name real volumes; env entries have one well-formed source."""
    causes: list[Cause] = []
    paths: set[str] = set()
    for m, mount in enumerate(container.get("volumeMounts") or []):
        spot = f"{where}.volumeMounts[{m}]"
        if not isinstance(mount, dict):
            continue
        name = mount.get("name", "")
        if not name:
            causes.append(("FieldValueRequired", f"{spot}.name", "Required value"))
        elif name not in volumes:
            causes.append(("FieldValueNotFound", f"{spot}.name", f"Not found: {_quote(name)}"))
        path = mount.get("mountPath", "")
        if not path:
            causes.append(("FieldValueRequired", f"{spot}.mountPath", "Required value"))
        elif path in paths:
            causes.append(
                (
                    "FieldValueInvalid",
                    f"{spot}.mountPath",
                    f"Invalid value: {_quote(path)}: must be unique",
                )
            )
        paths.add(path)
        sub = mount.get("subPath") or ""
        if sub.startswith("/"):
            causes.append(
                (
                    "FieldValueInvalid",
                    f"{spot}.subPath",
                    f"Invalid value: {_quote(sub)}: must be a relative path",
                )
            )
        elif ".." in sub.split("/"):
            causes.append(
                (
                    "FieldValueInvalid",
                    f"{spot}.subPath",
                    f"Invalid value: {_quote(sub)}: must not contain '..'",
                )
            )
    for e, var in enumerate(container.get("env") or []):
        spot = f"{where}.env[{e}]"
        if not isinstance(var, dict):
            continue
        if not var.get("name"):
            causes.append(("FieldValueRequired", f"{spot}.name", "Required value"))
        source = var.get("valueFrom")
        if source is None:
            continue
        if var.get("value"):
            causes.append(
                (
                    "FieldValueInvalid",
                    f"{spot}.valueFrom",
                    'Invalid value: "": may not be specified when `value` is not empty',
                )
            )
        kinds = [
            k
            for k in ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef")
            if (source or {}).get(k) is not None
        ]
        if not kinds:
            causes.append(
                (
                    "FieldValueInvalid",
                    f"{spot}.valueFrom",
                    'Invalid value: "": must specify one of: `fieldRef`, `resourceFieldRef`, '
                    "`configMapKeyRef` or `secretKeyRef`",
                )
            )
        elif len(kinds) > 1:
            causes.append(
                (
                    "FieldValueInvalid",
                    f"{spot}.valueFrom",
                    'Invalid value: "": may not have more than one field specified at a time',
                )
            )
        for kind in ("configMapKeyRef", "secretKeyRef"):
            ref = (source or {}).get(kind)
            if ref is not None and not ref.get("key"):
                causes.append(
                    ("FieldValueRequired", f"{spot}.valueFrom.{kind}.key", "Required value")
                )
            if ref is not None and not ref.get("name"):
                causes.append(
                    ("FieldValueRequired", f"{spot}.valueFrom.{kind}.name", "Required value")
                )
        field_ref = (source or {}).get("fieldRef")
        if field_ref is not None:
            path = field_ref.get("fieldPath", "")
            if not path:
                causes.append(
                    ("FieldValueRequired", f"{spot}.valueFrom.fieldRef.fieldPath", "Required value")
                )
            elif path not in _ENV_FIELD_PATHS and not _SUBSCRIPT.match(path):
                supported = ", ".join(_quote(p) for p in _ENV_FIELD_PATHS)
                causes.append(
                    (
                        "FieldValueNotSupported",
                        f"{spot}.valueFrom.fieldRef.fieldPath",
                        f"Unsupported value: {_quote(path)}: supported values: {supported}",
                    )
                )
    for e, source in enumerate(container.get("envFrom") or []):
        spot = f"{where}.envFrom[{e}]"
        if not isinstance(source, dict):
            continue
        refs = [k for k in ("configMapRef", "secretRef") if source.get(k) is not None]
        if len(refs) != 1:
            causes.append(
                (
                    "FieldValueInvalid",
                    spot,
                    'Invalid value: "": must specify one of: `configMapRef` or `secretRef`',
                )
            )
        for kind in refs:
            if not (source.get(kind) or {}).get("name"):
                causes.append(("FieldValueRequired", f"{spot}.{kind}.name", "Required value"))
    return causes


def _validate_deployment(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    replicas = spec.get("replicas")
    if not isinstance(replicas, int) or replicas < 0:
        causes.append(
            (
                "FieldValueInvalid",
                "spec.replicas",
                f"Invalid value: {replicas}: must be greater than or equal to 0",
            )
        )
    selector = spec.get("selector")
    if not selector or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        causes.append(("FieldValueRequired", "spec.selector", "Required value"))
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    if selector and not selector_object_matches(selector, labels):
        causes.append(
            (
                "FieldValueInvalid",
                "spec.template.metadata.labels",
                f"Invalid value: {labels!r}: `selector` does not match template `labels`",
            )
        )
    if old is not None and (old.get("spec") or {}).get("selector") != selector:
        causes.append(
            (
                "FieldValueInvalid",
                "spec.selector",
                f"Invalid value: {selector!r}: field is immutable",
            )
        )
    causes += _validate_pod_spec(template.get("spec"), "spec.template.spec")
    return causes


def _validate_pod(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    return _validate_pod_spec(obj.get("spec"), "spec")


def _validate_service(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    if spec.get("type", "ClusterIP") != "ExternalName" and not spec.get("ports"):
        causes.append(("FieldValueRequired", "spec.ports", "Required value"))
    for n, port in enumerate(spec.get("ports") or []):
        number = port.get("port") if isinstance(port, dict) else None
        if not isinstance(number, int) or not 0 < number < 65536:
            causes.append(
                (
                    "FieldValueInvalid",
                    f"spec.ports[{n}].port",
                    f"Invalid value: {number}: must be between 1 and 65535, inclusive",
                )
            )
    if old is not None:
        before = (old.get("spec") or {}).get("clusterIP")
        if spec.get("clusterIP") not in (None, "", before):
            causes.append(
                (
                    "FieldValueInvalid",
                    "spec.clusterIPs[0]",
                    f"Invalid value: {_quote(spec.get('clusterIP'))}: may not change once set",
                )
            )
    return causes


def _validate_hpa(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    target = spec.get("scaleTargetRef") or {}
    for field in ("kind", "name"):
        if not target.get(field):
            causes.append(("FieldValueRequired", f"spec.scaleTargetRef.{field}", "Required value"))
    maximum = spec.get("maxReplicas")
    minimum = spec.get("minReplicas", 1)
    if not isinstance(maximum, int) or maximum < 1:
        causes.append(
            (
                "FieldValueInvalid",
                "spec.maxReplicas",
                f"Invalid value: {maximum}: must be greater than or equal to 1",
            )
        )
    elif isinstance(minimum, int) and minimum > maximum:
        causes.append(
            (
                "FieldValueInvalid",
                "spec.maxReplicas",
                f"Invalid value: {maximum}: must be greater than or equal to `minReplicas`",
            )
        )
    return causes


_VALIDATORS = {
    "deployments": _validate_deployment,
    "pods": _validate_pod,
    "services": _validate_service,
    "secrets": configdata.validate_secret,
    "configmaps": configdata.validate_configmap,
    "networkpolicies": netpol.validate_policy,
    "gateways": gateway.validate_gateway,
    "gatewayclasses": gateway.validate_gateway_class,
    "httproutes": gateway.validate_route,
    "horizontalpodautoscalers": _validate_hpa,
}


def _probe_defaults(probe: dict[str, Any]) -> None:
    probe.setdefault("timeoutSeconds", 1)
    probe.setdefault("periodSeconds", 10)
    probe.setdefault("successThreshold", 1)
    probe.setdefault("failureThreshold", 3)
    if isinstance(probe.get("httpGet"), dict):
        probe["httpGet"].setdefault("scheme", "HTTP")


def default_pod_spec(spec: dict[str, Any]) -> None:
    """Pod spec defaults (restartPolicy, dnsPolicy, container fields, probes)."""
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if not isinstance(container, dict):
            continue
        container.setdefault("resources", {})
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        image = str(container.get("image", ""))
        tag = image.rsplit("/", 1)[-1].partition(":")[2] if "@" not in image else "digest"
        container.setdefault(
            "imagePullPolicy", "Always" if tag in ("", "latest") else "IfNotPresent"
        )
        for port in container.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            if isinstance(container.get(probe), dict):
                _probe_defaults(container[probe])


def _check_env_types(resource: Resource, spec: Any, prefix: str) -> None:
    """400 for an `env[].value` that is not a string (a YAML `PORT: 3001`), as the API
    server's JSON decoder refuses it before any validation."""
    if not isinstance(spec, dict):
        return
    for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        for var in (container.get("env") or []) if isinstance(container, dict) else []:
            value = var.get("value") if isinstance(var, dict) else None
            if value is not None and not isinstance(value, str):
                kind = configdata._json_kind(value)
                raise ApiError(
                    400,
                    f'{resource.kind} in version "{resource.version}" cannot be handled as a '
                    f"{resource.kind}: json: cannot unmarshal {kind} into Go struct field "
                    f"EnvVar.{prefix}containers.env.value of type string",
                    "BadRequest",
                )


def default_object(resource: Resource, obj: dict[str, Any]) -> None:
    """Fill the defaults the API server would (in place)."""
    spec = obj.get("spec")
    if resource.plural in ("deployments", "replicasets") and isinstance(spec, dict):
        _check_env_types(resource, (spec.get("template") or {}).get("spec"), "spec.template.spec.")
    elif resource.plural == "pods":
        _check_env_types(resource, spec, "spec.")
    if resource.plural == "deployments":
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        strategy = spec.setdefault("strategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {})
            rolling.setdefault("maxUnavailable", "25%")
            rolling.setdefault("maxSurge", "25%")
        template = spec.setdefault("template", {})
        template.setdefault("metadata", {})
        if isinstance(template.get("spec"), dict):
            default_pod_spec(template["spec"])
    elif resource.plural == "replicasets":
        if isinstance(spec, dict) and isinstance((spec.get("template") or {}).get("spec"), dict):
            default_pod_spec(spec["template"]["spec"])
    elif resource.plural == "pods":
        if isinstance(spec, dict):
            default_pod_spec(spec)
            spec.setdefault("enableServiceLinks", True)
            spec.setdefault("priority", 0)
            spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
            spec.setdefault("serviceAccountName", "default")
        obj.setdefault("status", {}).setdefault("phase", "Pending")
    elif resource.plural == "services":
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        spec.setdefault("internalTrafficPolicy", "Cluster")
        if spec["type"] != "ExternalName":
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
        for port in spec.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
                port.setdefault("targetPort", port.get("port"))
        obj.setdefault("status", {}).setdefault("loadBalancer", {})
    elif resource.plural == "namespaces":
        meta = obj.setdefault("metadata", {})
        meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta.get("name", "")
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj.setdefault("status", {}).setdefault("phase", "Active")
    elif resource.plural == "ingresses":
        obj.setdefault("status", {}).setdefault("loadBalancer", {})
    elif resource.plural == "httproutes":
        gateway.default_route(obj)
    elif resource.plural == "gateways":
        gateway.default_gateway(obj)
    elif resource.plural == "gatewayclasses":
        gateway.default_gateway_class(obj)
    elif resource.plural == "secrets":
        configdata.prepare_secret(obj)
    elif resource.plural == "configmaps":
        configdata.prepare_configmap(obj)
    elif resource.plural == "networkpolicies":
        netpol.default_policy(obj)
    elif resource.plural == "horizontalpodautoscalers":
        spec = obj.setdefault("spec", {})
        if isinstance(spec, dict):
            spec.setdefault("minReplicas", 1)
        status = obj.setdefault("status", {})
        status.setdefault("currentReplicas", 0)
        status.setdefault("desiredReplicas", 0)


def check_name_matches(obj: dict[str, Any], name: str | None, namespace: str | None) -> None:
    """400 when the body names a different object than the URL, as the server answers."""
    meta = obj.get("metadata") or {}
    if namespace is not None and meta.get("namespace") not in (None, "", namespace):
        raise ApiError(
            400,
            "the namespace of the provided object does not match the namespace sent on the request",
            "BadRequest",
        )
    if name is not None and meta.get("name") not in (None, "", name):
        raise ApiError(
            400,
            f"the name of the object ({meta.get('name')}) does not match the name on the URL "
            f"({name})",
            "BadRequest",
        )


def invalid_scale(name: str, replicas: Any) -> ApiError:
    """422 for a Scale with a negative or missing replica count."""
    return invalid(
        "Scale",
        "autoscaling",
        name,
        [
            (
                "FieldValueInvalid",
                "spec.replicas",
                f"Invalid value: {replicas}: must be greater than or equal to 0",
            )
        ],
    )
