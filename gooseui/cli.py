"""The `gooseui` command."""

from __future__ import annotations

import argparse
import logging
import sys

from gooseui import embedded, logs
from gooseui.config import ConfigError, load_settings
from gooseui.logs import log

logger = logging.getLogger("gooseui.cli")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gooseui",
        description="Operator console for Kubernetes-isolated Goose agent environments.",
    )
    parser.add_argument("--host", help="address to listen on (default: GOOSEUI_HOST, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default: GOOSEUI_PORT, 8080)")
    parser.add_argument(
        "--simulate",
        action="store_true",
        help="start a simulated Kubernetes cluster on loopback and use it (no cluster needed)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    overrides = {k: v for k, v in {"host": args.host, "port": args.port}.items() if v is not None}
    try:
        settings = load_settings(**overrides)
    except ConfigError as exc:
        print(f"gooseui: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if settings.mongo_embedded and not embedded.available():
        print(f"gooseui: {embedded.INSTALL_HINT}", file=sys.stderr)
        raise SystemExit(2)
    logs.configure(settings.log_format)

    simulator = None
    if args.simulate:
        # The simulator runs on its own event loop in a thread; the console reaches it only
        # through the kubeconfig it writes, exactly as it would reach a real cluster.
        from gooseui.devcluster import SimClusterThread

        simulator = SimClusterThread(settings.data_dir.resolve()).start()
        settings = settings.model_copy(
            update={
                "kubeconfig": str(simulator.kubeconfig_path),
                "cluster_label": settings.cluster_label or "Simulated cluster",
            }
        )
        log(
            logger,
            "simulator.started",
            url=simulator.url,
            kubeconfig=str(simulator.kubeconfig_path),
            hint=f"kubectl --kubeconfig {simulator.kubeconfig_path} get deploy -A",
        )

    from gooseui import app  # NiceGUI is heavy; import it only once settings are good

    print(f"gooseui: serving on http://{settings.host}:{settings.port}", file=sys.stderr)
    try:
        app.run(settings, exit_on_startup_failure=True, simulated=simulator is not None)
    finally:
        if simulator is not None:
            simulator.stop()
