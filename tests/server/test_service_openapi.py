"""The service's OpenAPI spec stays what clients were built against (tests/server/data/openapi.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from keel.server import ServiceConfig, create_app

from .service_agents import calc, support

SAVED = Path(__file__).with_name("data") / "openapi.json"


def operations(spec: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    return {
        (path, method): sorted(operation["responses"])
        for path, methods in spec["paths"].items()
        for method, operation in methods.items()
    }


def test_the_routes_methods_status_codes_and_schemas_are_the_saved_ones(tmp_path: Path) -> None:
    saved = json.loads(SAVED.read_text())
    app = create_app(ServiceConfig(database_url=f"sqlite:///{tmp_path / 'keel.db'}", agents=[calc, support]))
    spec = json.loads(json.dumps(app.openapi()))
    assert operations(spec) == operations(saved)
    assert spec["components"] == saved["components"]
    assert spec == saved
