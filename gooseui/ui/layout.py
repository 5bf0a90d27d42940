"""The frame every page shares: the product, where the operator is, the cluster and the database.

The health dots read the process's one readiness probe (`Runtime.health`): a page never
probes anything itself, however many tabs are open.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from nicegui import app, ui

from gooseui.models import Status
from gooseui.runtime import Runtime

HEALTH_SECONDS = 5.0
LANGUAGE = "en-US"

# White text on each: every pair is at least 4.5:1 (WCAG AA), measured by the browser test.
STATUS_COLORS = {
    Status.INACTIVE: "#4b5563",
    Status.ACTIVATING: "#1d4ed8",
    Status.ACTIVE: "#15803d",
    Status.DEACTIVATING: "#475569",
    Status.FAILED: "#b91c1c",
    Status.DELETING: "#c2410c",
}
PRIMARY = "#1d4ed8"  # Quasar's default (#1976d2) is 4.6:1 on white; this is 6.7:1

CSS = """
:focus-visible { outline: 3px solid #f59e0b !important; outline-offset: 2px; }
.q-btn:focus-visible .q-focus-helper { opacity: .2 !important; }
.status-badge { color: #fff; border-radius: 4px; padding: 1px 8px; font-size: .75rem;
  font-weight: 600; white-space: nowrap; line-height: 1.25rem; }
.gooseui-offline { position: fixed; inset: auto 0 0 0; z-index: 9999; background: #b91c1c;
  color: #fff; padding: 8px 16px; font-weight: 600; text-align: center; display: none; }
body.gooseui-disconnected .gooseui-offline { display: block; }
"""

# NiceGUI shows its own spinner while the websocket is away; say plainly what it means
OFFLINE_JS = """
<script>
(function () {
  function mark(on) { document.body && document.body.classList.toggle('gooseui-disconnected', on); }
  window.addEventListener('offline', function () { mark(true); });
  window.addEventListener('online', function () { mark(false); });
  document.addEventListener('DOMContentLoaded', function () {
    var poll = setInterval(function () {
      if (!window.socket) return;
      clearInterval(poll);
      window.socket.on('disconnect', function () { mark(true); });
      window.socket.on('connect', function () { mark(false); });
    }, 200);
  });
})();
</script>
"""


def runtime() -> Runtime:
    return app.state.runtime


def _dot(ok: bool | None) -> str:
    return {True: "text-green-400", False: "text-red-400", None: "text-slate-400"}[ok]


def status_badge(status: Status, marker: str | None = None) -> ui.label:
    badge = ui.label(str(status)).classes("status-badge")
    badge.style(f"background-color: {STATUS_COLORS[status]}")
    if marker:
        badge.mark(marker)
    return badge


def show_status(badge: ui.label, status: Status) -> None:
    badge.set_text(str(status))
    badge.style(replace=f"background-color: {STATUS_COLORS[status]}")


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    """'3 min ago', '2 h ago', '5 d ago'; 'never' for no moment."""
    if moment is None:
        return "never"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = max(0, int(((now or datetime.now(UTC)) - moment).total_seconds()))
    return f"{duration(seconds)} ago" if seconds >= 60 else "just now"


def duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} d"


def when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "never"


@contextmanager
def frame(title: str, crumbs: list[tuple[str, str | None]] | None = None) -> Iterator[None]:
    """Header (product, where the operator is, health) and the content column.

    `crumbs` are (text, address) pairs leading to this page; the last has no address.
    """
    rt = runtime()
    ui.colors(primary=PRIMARY)
    ui.add_css(CSS)
    ui.add_body_html(OFFLINE_JS)
    ui.label(
        "The console is not answering: changes made now are not sent. It reconnects by itself."
    ).classes("gooseui-offline").props('role="alert"')
    with ui.header().classes("items-center justify-between bg-slate-800 px-4 py-2 gap-2 flex-wrap"):
        with ui.row().classes("items-center gap-2 no-wrap min-w-0"):
            with ui.link(target="/").classes("flex items-center gap-1 text-white no-underline"):
                ui.icon("smart_toy", size="md")
                ui.label("gooseui").classes("text-xl font-semibold")
            with ui.row().classes("items-center gap-1 text-sm text-slate-200 min-w-0 no-wrap"):
                for text, target in crumbs or [(title, None)]:
                    ui.icon("chevron_right", size="xs").classes("text-slate-400")
                    if target:
                        ui.link(text, target).classes("text-slate-100 truncate max-w-[12rem]")
                    else:
                        ui.label(text).classes("truncate max-w-[16rem]").mark("crumb")
        with ui.row().classes("items-center gap-4 text-sm"):
            with ui.row().classes("items-center gap-1").mark("cluster"):
                cluster_dot = ui.icon("circle", size="xs").classes(_dot(None))
                with cluster_dot:
                    cluster_tip = ui.tooltip("checking")
                ui.label(f"Cluster: {rt.cluster_label}").classes("max-sm:hidden")
            with ui.row().classes("items-center gap-1").mark("database"):
                database_dot = ui.icon("circle", size="xs").classes(_dot(None))
                with database_dot:
                    database_tip = ui.tooltip("checking")
                ui.label(f"Database: {rt.database_label}").classes("max-sm:hidden")
            # what happened since start (the embedded database restarted), from the checks
            with ui.row().classes("items-center gap-1 text-amber-300").mark("notice") as notice:
                ui.icon("history", size="xs")
                notice_label = ui.label("")
                notice_tip = ui.tooltip("")
            notice.set_visibility(False)
            for warning in rt.warnings:
                with ui.row().classes("items-center gap-1 text-amber-300").mark("warning"):
                    ui.icon("warning", size="xs")
                    ui.label(warning.short).classes("max-sm:hidden")
                    ui.tooltip(warning.detail)

    def check() -> None:
        _, checks = rt.health()
        for dot, tip, name in (
            (cluster_dot, cluster_tip, "cluster"),
            (database_dot, database_tip, "mongodb"),
        ):
            result = checks.get(name, {})
            ok = result.get("ok")
            dot.classes(replace=_dot(None if ok is None else bool(ok)))
            tip.set_text(result.get("error") or ("answering" if ok else "checking"))
        text = checks.get("mongodb", {}).get("notice")
        notice.set_visibility(bool(text))
        if text:
            notice_label.set_text("Database restarted")
            notice_tip.set_text(text)

    check()
    ui.timer(HEALTH_SECONDS, check)
    with ui.column().classes("w-full max-w-6xl mx-auto p-2 sm:p-4 gap-4"):
        yield
