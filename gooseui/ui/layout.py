"""The frame every page shares: the product, the cluster and the database, each with a dot."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from nicegui import app, ui

from gooseui.runtime import Runtime

HEALTH_SECONDS = 10.0


def runtime() -> Runtime:
    return app.state.runtime


def _dot(ok: bool | None) -> str:
    return {True: "text-green-400", False: "text-red-400", None: "text-slate-400"}[ok]


@contextmanager
def frame(title: str) -> Iterator[None]:
    """Header and content column; the health dots refresh in the background."""
    rt = runtime()
    with ui.header().classes("items-center justify-between bg-slate-800 px-4 py-2"):
        with ui.row().classes("items-center gap-2"):
            ui.icon("smart_toy", size="md")
            ui.label("gooseui").classes("text-xl font-semibold")
            ui.label(title).classes("text-sm text-slate-300")
        with ui.row().classes("items-center gap-4 text-sm"):
            with ui.row().classes("items-center gap-1").mark("cluster"):
                cluster_dot = ui.icon("circle", size="xs").classes(_dot(None))
                with cluster_dot:
                    cluster_tip = ui.tooltip("checking")
                ui.label(f"Cluster: {rt.cluster_label}")
            with ui.row().classes("items-center gap-1").mark("database"):
                database_dot = ui.icon("circle", size="xs").classes(_dot(None))
                with database_dot:
                    database_tip = ui.tooltip("checking")
                ui.label(f"Database: {rt.database_label}")
            # what happened since start (the embedded database restarted), from the checks
            with ui.row().classes("items-center gap-1 text-amber-300").mark("notice") as notice:
                ui.icon("history", size="xs")
                notice_label = ui.label("")
                notice_tip = ui.tooltip("")
            notice.set_visibility(False)
            for warning in rt.warnings:
                with ui.row().classes("items-center gap-1 text-amber-300").mark("warning"):
                    ui.icon("warning", size="xs")
                    ui.label(warning.short)
                    ui.tooltip(warning.detail)

    async def check() -> None:
        _, checks = await rt.readiness()
        for dot, tip, name in (
            (cluster_dot, cluster_tip, "cluster"),
            (database_dot, database_tip, "mongodb"),
        ):
            check = checks.get(name, {})
            dot.classes(replace=_dot(bool(check.get("ok"))))
            tip.set_text(check.get("error") or "answering")
        text = checks.get("mongodb", {}).get("notice")
        notice.set_visibility(bool(text))
        if text:
            notice_label.set_text("Database restarted")
            notice_tip.set_text(text)

    ui.timer(HEALTH_SECONDS, check)
    with ui.column().classes("w-full max-w-6xl mx-auto p-4 gap-4"):
        yield
