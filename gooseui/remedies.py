"""What an operator can do about each failure reason.

A failure's message says what the cluster or the agent said; the remedy says where to look
next and which setting changes the outcome. The project page shows it beside the failure;
`see` names the diagnostic that shows the evidence, so the page can link to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gooseui.config import env_name

See = Literal["logs", "previous-logs", "events", "quota"]


@dataclass(frozen=True)
class Remedy:
    text: str
    see: See | None = None


def _remedies() -> dict[str, Remedy]:
    image = env_name("acr_image")
    pull_secret = env_name("image_pull_secret")
    return {
        "ImagePullFailed": Remedy(
            f"Check that {image} names an image and tag that exist in the registry, and "
            "that the cluster may pull from it: on AKS attach the registry to the cluster "
            f"(`az aks update --attach-acr`), elsewhere set {pull_secret} to a pull Secret.",
            "events",
        ),
        "CrashLoop": Remedy(
            "The agent exits soon after it starts. Its previous container's log says why "
            "(a missing or refused provider key, an unreachable MONGODB_URL). Exit code 137 "
            f"or OOMKilled means it ran out of memory: raise {env_name('memory_limit')}.",
            "previous-logs",
        ),
        "Unschedulable": Remedy(
            "No node can take the pod: the cluster is full, or the pod asks for more than a "
            f"node has ({env_name('cpu_request')}, {env_name('memory_request')}). Add "
            "nodes or lower the requests.",
            "events",
        ),
        "QuotaExceeded": Remedy(
            "The user's namespace has used its ResourceQuota: stop another of the user's "
            f"projects, or raise {env_name('quota_pods')}, {env_name('quota_cpu')} or "
            f"{env_name('quota_memory')}.",
            "quota",
        ),
        "PodSecurityRejected": Remedy(
            "The namespace enforces Pod Security `restricted` and the pod asked for more. "
            "The console's template is compliant: check for an admission policy or a "
            "changed image that needs root.",
            "events",
        ),
        "ProgressDeadlineExceeded": Remedy(
            "The Deployment stopped making progress; its events and the pod's say where.",
            "events",
        ),
        "HealthCheckFailed": Remedy(
            "The pod runs but the agent does not answer its health check: read its log, "
            f"and check the port ({env_name('goose_port')}) and any NetworkPolicy.",
            "logs",
        ),
        "Timeout": Remedy(
            "The environment was not ready in time. The events show the step it was on; "
            f"raise {env_name('activation_timeout')} if the image is slow to pull.",
            "events",
        ),
        "ClusterUnavailable": Remedy(
            "The Kubernetes API server did not answer: check the console's kubeconfig or "
            "service account and the cluster's health, then retry.",
        ),
        "Forbidden": Remedy(
            "The console's Kubernetes identity lacks a permission: compare its ClusterRole "
            "with the one in the README.",
        ),
        "ContainerConfigError": Remedy(
            "The pod names a Secret or key that does not exist: check "
            f"{env_name('goose_env_secret')} and the Secrets in the user's namespace.",
            "events",
        ),
        "AgentMisconfigured": Remedy(
            "The agent's environment is incomplete: it needs MONGODB_URL, GOOSE_PROVIDER "
            f"and GOOSE_MODEL (see {env_name('goose_env_secret')}).",
        ),
        "RouteNotAccepted": Remedy(
            f"The Gateway refused the route: check {env_name('gateway_name')} and "
            f"{env_name('gateway_namespace')}, and the Gateway's listeners.",
        ),
        "StoragePending": Remedy(
            "The workspace's claim cannot bind: check the storage class and the quota.",
            "events",
        ),
        "Interrupted": Remedy(
            "The console stopped in the middle of this work (a restart, say): retry it.",
        ),
        "ClusterError": Remedy(
            "The Kubernetes API refused a request; the message says which and why.",
            "events",
        ),
    }


REMEDIES = _remedies()
DEFAULT = Remedy("Retry; if it fails again, the log and the events of its objects say why.", "logs")


def remedy_for(reason: str | None) -> Remedy | None:
    """The remedy for a failure reason (None when there is no failure)."""
    if not reason:
        return None
    return REMEDIES.get(reason, DEFAULT)
