"""`python -m gooseui.devcluster`: run the simulated cluster on its own.

Prints the API server URL and the kubeconfig path, then serves until interrupted (SIGINT
or SIGTERM stop it cleanly), so `kubectl --kubeconfig <path>` and a console can use it.

`python -m gooseui.devcluster fault --kubeconfig <path> ACTION` breaks and mends a running
simulator from another process (see `control.py`):

    fail --path /apis/apps/v1 --status 503 [--count N] [--method PATCH]
    hang [--path /] [--count N] [--method GET]
    unschedulable | schedulable
    database-outage | database-back
    slow-readiness SECONDS
    clear
    show
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from .cluster import SimCluster


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m gooseui.devcluster", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument(
        "--data-dir", default="./.gooseui", help="where the kubeconfig and TLS files go"
    )
    parser.add_argument(
        "--kubeconfig",
        default=None,
        help="kubeconfig path (default DATA_DIR/simulated-kubeconfig.yaml)",
    )
    parser.add_argument(
        "--proxy-source",
        default=None,
        help="service-proxy traffic source for NetworkPolicy: namespace:<ns> (default "
        "namespace:kube-system, AKS konnectivity) or ip:<address> (API server on the host "
        "network); default from GOOSEUI_SIM_PROXY_SOURCE",
    )
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    cluster = SimCluster(
        args.data_dir,
        host=args.host,
        port=args.port,
        kubeconfig_path=args.kubeconfig,
        proxy_source=args.proxy_source,
    )
    await cluster.start()
    print(f"Simulated cluster: {cluster.url}", flush=True)
    print(f"Kubeconfig: {cluster.kubeconfig_path}", flush=True)
    print(f"Try: kubectl --kubeconfig {cluster.kubeconfig_path} get nodes", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await cluster.stop()


def fault(argv: list[str]) -> int:
    """Send one control request to a running simulator; print its answer."""
    import json
    import ssl
    from pathlib import Path

    import httpx

    from . import kubeconfig

    parser = argparse.ArgumentParser(prog="python -m gooseui.devcluster fault")
    parser.add_argument("--kubeconfig", required=True, help="the simulator's kubeconfig")
    actions = parser.add_subparsers(dest="action", required=True)
    fail = actions.add_parser("fail", help="answer API calls with an error status")
    hang = actions.add_parser("hang", help="answer API calls with nothing at all")
    for sub in (fail, hang):
        sub.add_argument("--path", default="/", help="path prefix (default /: every call)")
        sub.add_argument("--count", type=int, default=None, help="how many (default: all)")
        sub.add_argument("--method", default=None, help="only this method")
    fail.add_argument("--status", type=int, default=503)
    fail.add_argument("--retry-after", type=int, default=None)
    slow = actions.add_parser("slow-readiness", help="extra seconds before a new pod is Ready")
    slow.add_argument("seconds", type=float)
    for name in (
        "unschedulable",
        "schedulable",
        "database-outage",
        "database-back",
        "freeze-watches",
        "clear",
    ):
        actions.add_parser(name)
    actions.add_parser("show", help="the faults in force")
    actions.add_parser("audit", help="the API requests served by verb and resource, and watches")
    actions.add_parser("audit-reset", help="the same, then start counting anew")
    args = parser.parse_args(argv)
    routes: dict[str, tuple[str, str, dict[str, object]]] = {
        "fail": ("POST", "faults/requests", {"status": getattr(args, "status", None),
                                              "retry_after": getattr(args, "retry_after", None)}),
        "hang": ("POST", "faults/hang", {}),
        "unschedulable": ("POST", "nodes/schedulable", {"schedulable": False}),
        "schedulable": ("POST", "nodes/schedulable", {"schedulable": True}),
        "database-outage": ("POST", "agents/database-outage", {"active": True}),
        "database-back": ("POST", "agents/database-outage", {"active": False}),
        "slow-readiness": ("POST", "pods/slow-readiness", {"seconds": getattr(args, "seconds", 0)}),
        "freeze-watches": ("POST", "faults/freeze-watches", {}),
        "clear": ("POST", "faults/clear", {}),
        "show": ("GET", "faults", {}),
        "audit": ("GET", "audit", {}),
        "audit-reset": ("POST", "audit/reset", {}),
    }  # fmt: skip
    method, path, body = routes[args.action]
    if args.action in ("fail", "hang"):
        body |= {"path_prefix": args.path, "count": args.count, "method": args.method}
    server, token, ca = kubeconfig.read(Path(args.kubeconfig))
    verify = ssl.create_default_context(cadata=ca.decode()) if ca else True
    try:
        response = httpx.request(
            method,
            f"{server}/sim/v1/{path}",
            json=body if method == "POST" else None,
            headers={"Authorization": f"Bearer {token}"},
            verify=verify,
            timeout=10,
        )
    except httpx.TransportError as exc:
        print(f"error: the simulator at {server} does not answer ({exc})", file=sys.stderr)
        return 1
    print(json.dumps(response.json(), indent=2))
    return 0 if response.status_code == 200 else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["fault"]:
        return fault(argv[1:])
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        asyncio.run(serve(args))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
