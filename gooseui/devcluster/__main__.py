"""`python -m gooseui.devcluster`: run the simulated cluster on its own.

Prints the API server URL and the kubeconfig path, then serves until interrupted,
so `kubectl --kubeconfig <path>` can drive it.
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


def main(argv: list[str] | None = None) -> int:
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
