"""A simulated Kubernetes cluster for development, demos and tests.

The console must drive it through the same code path as a real cluster, so this is
a real HTTPS server on loopback speaking a subset of the Kubernetes API with
Kubernetes' JSON shapes (discovery, OpenAPI v3 for kubectl, watches, server-side
apply, `Status` errors), a controller manager and kubelet that turn Deployments into
pods with events and conditions, and a simulated Goose API per Ready pod reachable
through the API server's service proxy. Nothing here imports the rest of `gooseui`.

Public API
----------
``SimCluster(data_dir, host="127.0.0.1", port=0, delays=None, agent=None, token=None,
kubeconfig_path=None, history_limit=20000, proxy_source=None)``
    ``await start()`` / ``await stop()`` (or ``async with``). Attributes: ``url``
    (``https://127.0.0.1:PORT``), ``kubeconfig_path`` (default
    ``data_dir/simulated-kubeconfig.yaml``; context ``gooseui-simulated``, bearer token,
    the simulator's CA), ``ca_path``, ``token``, ``requests_served``, ``audit`` (requests by
    RBAC verb, group, resource and scope, and the watches open and their peak: what an
    activation costs the API server; ``/sim/v1/audit`` over HTTP).
    Watches with ``allowWatchBookmarks`` get a BOOKMARK every ``set_bookmark_seconds``
    (60 s, as the watch cache sends them) and one 2 s before their ``timeoutSeconds``.
    TLS is required because kubectl drops bearer tokens on plain HTTP; the CA and
    serving certificate are made once with the ``openssl`` command under
    ``data_dir/simulated-cluster-tls``.
    ``proxy_source``: where service-proxy traffic comes from for NetworkPolicy,
    ``"namespace:kube-system"`` (default; AKS with konnectivity: a pod 10.244.0.250 with
    label ``k8s-app: konnectivity-agent`` in that namespace) or ``"ip:10.224.0.4"`` (AKS
    with API Server VNet Integration, kubeadm, kind, k3s: the API server's host address,
    not a pod); unset: ``GOOSEUI_SIM_PROXY_SOURCE``, same syntax. Also a ``TrafficSource``.

Strict like AKS (what a console must cope with):
    Secrets and ConfigMaps (core v1): ``stringData`` folded into base64 ``data`` and never
    stored; ``data`` must be base64 and ConfigMap ``data`` strings (else 400 "cannot be
    handled as a Secret/ConfigMap", as the real decoder answers); ``type`` defaults to
    ``Opaque``; config-key names, 1 MiB, per-type keys and ``immutable`` give 422.
    The kubelet resolves at every container start ``envFrom`` then ``env`` (``$(VAR)``,
    ``valueFrom`` secretKeyRef/configMapKeyRef/fieldRef/resourceFieldRef, ``optional``,
    ``prefix``, Service links, ``KUBERNETES_SERVICE_HOST``): a missing Secret, ConfigMap or
    key leaves the container waiting ``CreateContainerConfigError`` with the kubelet's
    message (``secret "x" not found``, ``couldn't find key K in Secret ns/x``) and a Warning
    ``Failed`` event, retried with back-off and at once when a Secret/ConfigMap of the
    namespace changes. ConfigMap/Secret/projected/downwardAPI volumes (``items``,
    ``subPath``, ``optional``): a missing object keeps the pod ``ContainerCreating`` with
    ``FailedMount`` events; mounted files reach the agent as ``Launch.files``.
    When the agent's ``start()`` raises ``AgentExit`` the container terminates with its
    exit code and crash-loops (``lastState.terminated``, restartCount, BackOff events),
    re-resolving environment and volumes at each restart.
    ``pods/{name}/log``: each container instance's lines with timestamps (current and
    previous), ``container``, ``tailLines``, ``sinceSeconds``, ``sinceTime``,
    ``timestamps``, ``previous``, ``follow`` (chunked until the instance ends),
    ``limitBytes``; 400 ``container "c" in pod "p" is waiting to start: <reason>`` and
    ``previous terminated container "c" in pod "p" not found``. Lines are kept as the
    agent writes them (secrets included).
    The service and pod proxy pass every method with query and body, and enforce the
    target namespace's NetworkPolicies against the proxy source: dropped traffic hangs,
    then (``Delays.proxy_dial_timeout``, 30 s) answers 503 ``error trying to reach
    service: dial tcp <podIP>:<port>: i/o timeout``. Kubelet probes are not filtered.
    Every namespace carries ``kubernetes.io/metadata.name``.
    Discovery answers with or without the trailing slash; ``autoscaling/v1`` serves
    HorizontalPodAutoscalers (stored and validated; no autoscaler acts on them).
    Gateway API v1: GatewayClass, Gateway, HTTPRoute. Controller ``CONTROLLER_NAME``
    (``gooseui.io/simulated-gateway``) owns every GatewayClass with that controllerName;
    the cluster starts with GatewayClass ``GATEWAY_CLASS`` (``gooseui-simulated``). It sets
    Gateway status (Accepted/Programmed, an address, listeners with attachedRoutes) and
    each HTTPRoute's ``status.parents[]`` entry per parentRef naming an existing Gateway of
    its class: ``Accepted`` (``Accepted``, or False ``NotAllowedByListeners`` /
    ``NoMatchingListenerHostname`` / ``NoMatchingParent``) and ``ResolvedRefs``
    (``BackendNotFound``, ``RefNotPermitted``, ``InvalidKind``), with observedGeneration.
    A route whose Gateway does not exist gets no status; a Gateway of another class stays
    ``Pending`` "Waiting for controller". There is no gateway data plane.

Fault API (call on the cluster's loop, or through ``SimClusterThread``):
    ``set_nodes_schedulable(False)``     new pods stay Pending, PodScheduled=False/Unschedulable
    ``fail_requests(path_prefix, status, count=1, method=None, retry_after=None, message=None)``
                                         next N API calls answer `status` with a Status body
                                         (429 adds Retry-After); ``count=None`` until cleared
    ``agent_die_after(events, namespace=None, deployment=None, count=1)``
                                         reply streams drop the connection after K events
    ``agent_split_events(chunk_size=7, pause=0.005, namespace=None, deployment=None, count=None)``
                                         each SSE event written in small pieces
    ``set_slow_readiness(seconds)``, ``set_delays(**Delays fields)``,
    ``set_agent(**AgentSettings fields)``
    ``set_proxy_source(namespace="kube-system", ip=None)``
                                         proxy traffic from a pod in `namespace`, or
                                         (``ip=`` alone) from that host address; the
                                         next request uses it; ``proxy_source`` reads it
    ``compact_history()``                older watch resourceVersions get 410 Expired
    ``clear_faults()``                   also resets the proxy source to the constructor's
    ``agent_records(kind=None)`` / ``await wait_agent_record(kind, start=0, timeout=5)``
                                         stream records: started, completed,
                                         client_disconnected, died, server_stopped
                                         (with ``time.monotonic()`` stamps)
    ``launches(namespace=None, pod=None)`` every agent start (``process.Launch``: the
                                         resolved env and files), newest last
Faults that are cluster objects: an image tag ``pull-error`` (ErrImagePull /
ImagePullBackOff), ``crash`` (CrashLoopBackOff, exit 1 Error), ``oom`` (OOMKilled,
137), ``never-ready`` (Running, never Ready, health 503); a ResourceQuota with
``hard: {pods: "0"}`` (Deployment ReplicaFailure/FailedCreate "exceeded quota"; compute
quotas and LimitRange defaults are enforced too); a namespace label
``pod-security.kubernetes.io/enforce: restricted`` rejects non-compliant pods
(ReplicaFailure "violates PodSecurity"); ``kubectl cordon`` works too.

``SimClusterThread(data_dir, **SimCluster kwargs)`` / ``run_in_thread(data_dir, **kwargs)``
    The cluster on its own event loop in a daemon thread: ``start()`` (blocks until
    serving), ``stop()``, context manager, the same properties, thread-safe wrappers
    of every fault method, ``call(fn, *args)``, ``run(coro)`` and ``await arun(coro)``
    to run code on the simulator's loop.

``Delays`` (pod timings: schedule, pull, start, ready, slow_readiness, terminate,
crash, backoff, backoff_max, probe_period, namespace_finalize; proxy_dial_timeout) and
``AgentSettings``
(delta_delay, reply_deltas, keepalive, tool_delay); when not passed they are read by
``delays_from_env()`` / ``agent_from_env()`` from ``GOOSEUI_SIM_DELAY_<FIELD>`` /
``GOOSEUI_SIM_AGENT_<FIELD>`` (seconds; e.g. ``GOOSEUI_SIM_DELAY_PULL=2``).

The simulated agent (``goose.py``; GOOSE_API.md) is as strict as the real ``goose
api-server``: it runs the container's command line (the image's ENTRYPOINT ``goose api-server
--port 3001 --host 0.0.0.0`` unless ``command`` replaces it; clap's refusals exit 2, a
missing executable is StartError 128, and it is reachable only on the port and address it
listens on), exits 1 without ``GOOSE_PROVIDER``/``GOOSE_MODEL``/``MONGODB_URL`` or when
its MongoDB does not answer, keeps sessions and messages in ``MONGODB_URL`` /
``MONGODB_DATABASE`` (so they outlive pods and are shared by agents of one database),
answers an unknown session with 200 and one ``error`` event, and logs its secrets as the
real one does. Its replies stream at least 10 deltas ``delta_delay`` apart, a tool call
when the message mentions "tool", an ``error`` then ``complete`` on "simulate-error", and
rich Markdown (a heading, a list, fenced code, a table, a line of raw HTML and an image, as
models write) when it mentions "markdown".

Standalone: ``python -m gooseui.devcluster --port P --data-dir D [--proxy-source S]``
prints the URL and kubeconfig path and serves until interrupted.
"""

from .cluster import KUBECONFIG_NAME, SimCluster, SimClusterThread, run_in_thread
from .faults import AgentFault, RequestFault
from .gateway import CONTROLLER_NAME, GATEWAY_CLASS
from .goose import StreamRecord
from .kubeconfig import CONTEXT_NAME
from .netpol import TrafficSource
from .process import AgentExit, Launch
from .settings import (
    PROXY_SOURCE_ENV,
    AgentSettings,
    Delays,
    agent_from_env,
    delays_from_env,
    proxy_source_from_env,
)

__all__ = [
    "CONTEXT_NAME",
    "CONTROLLER_NAME",
    "GATEWAY_CLASS",
    "KUBECONFIG_NAME",
    "PROXY_SOURCE_ENV",
    "AgentExit",
    "AgentFault",
    "AgentSettings",
    "Delays",
    "Launch",
    "RequestFault",
    "SimCluster",
    "SimClusterThread",
    "StreamRecord",
    "TrafficSource",
    "agent_from_env",
    "delays_from_env",
    "proxy_source_from_env",
    "run_in_thread",
]
