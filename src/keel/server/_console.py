"""The web console: its static files and its page at ``/``."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["CONSOLE", "add_console"]

CONSOLE = Path(__file__).with_name("console")


def add_console(app: FastAPI) -> None:
    """Serve the console on `app`, when its files are installed."""
    if not CONSOLE.is_dir():
        return
    app.mount("/console/static", StaticFiles(directory=CONSOLE), name="console")

    @app.get("/", include_in_schema=False)
    def console() -> FileResponse:
        return FileResponse(CONSOLE / "index.html")
