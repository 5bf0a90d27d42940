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
kubeconfig_path=None, history_limit=20000)``
    ``await start()`` / ``await stop()`` (or ``async with``). Attributes: ``url``
    (``https://127.0.0.1:PORT``), ``kubeconfig_path`` (default
    ``data_dir/simulated-kubeconfig.yaml``; context ``gooseui-simulated``, bearer token,
    the simulator's CA), ``ca_path``, ``token``, ``requests_served``.
    TLS is required because kubectl drops bearer tokens on plain HTTP; the CA and
    serving certificate are made once with the ``openssl`` command under
    ``data_dir/simulated-cluster-tls``.

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
    ``compact_history()``                older watch resourceVersions get 410 Expired
    ``clear_faults()``
    ``agent_records(kind=None)`` / ``await wait_agent_record(kind, start=0, timeout=5)``
                                         stream records: started, completed,
                                         client_disconnected, died, server_stopped
                                         (with ``time.monotonic()`` stamps)
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
crash, backoff, backoff_max, probe_period, namespace_finalize) and ``AgentSettings``
(delta_delay, reply_deltas, keepalive, tool_delay); when not passed they are read by
``delays_from_env()`` / ``agent_from_env()`` from ``GOOSEUI_SIM_DELAY_<FIELD>`` /
``GOOSEUI_SIM_AGENT_<FIELD>`` (seconds; e.g. ``GOOSEUI_SIM_DELAY_PULL=2``).

The simulated agent (DESIGN section 6) answers ``/api/v1/health``, sessions and
messages; a reply streams at least 10 deltas ``delta_delay`` apart, a tool call when
the message mentions "tool", an ``error`` then ``complete`` when it contains
"simulate-error". Sessions are kept per project (namespace, deployment) and survive
pod restarts.

Standalone: ``python -m gooseui.devcluster --port P --data-dir D`` prints the URL
and kubeconfig path and serves until interrupted.
"""

from .cluster import KUBECONFIG_NAME, SimCluster, SimClusterThread, run_in_thread
from .faults import AgentFault, RequestFault
from .goose import StreamRecord
from .kubeconfig import CONTEXT_NAME
from .settings import AgentSettings, Delays, agent_from_env, delays_from_env

__all__ = [
    "CONTEXT_NAME",
    "KUBECONFIG_NAME",
    "AgentFault",
    "AgentSettings",
    "Delays",
    "RequestFault",
    "SimCluster",
    "SimClusterThread",
    "StreamRecord",
    "agent_from_env",
    "delays_from_env",
    "run_in_thread",
]
