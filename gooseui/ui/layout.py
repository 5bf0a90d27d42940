"""The frame every page shares: a header naming the product, the cluster and the database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from nicegui import app, ui

from gooseui.runtime import Runtime


def runtime() -> Runtime:
    return app.state.runtime


@contextmanager
def frame(title: str) -> Iterator[None]:
    rt = runtime()
    with ui.header().classes("items-center justify-between bg-slate-800 px-4 py-2"):
        with ui.row().classes("items-center gap-2"):
            ui.label("🪿").classes("text-2xl")
            ui.label("gooseui").classes("text-xl font-semibold")
            ui.label(title).classes("text-sm text-slate-300")
        with ui.row().classes("items-center gap-4 text-sm"):
            with ui.row().classes("items-center gap-1").mark("cluster"):
                ui.icon("hub")
                ui.label(f"Cluster: {rt.cluster_label}")
            with ui.row().classes("items-center gap-1").mark("database"):
                ui.icon("storage")
                ui.label(f"Database: {rt.database_label}")
    with ui.column().classes("w-full max-w-5xl mx-auto p-4 gap-4"):
        yield
