"""Schemathesis fuzzing of the OpenAPI spec against the real service: no request gets a server error.

Both valid requests (positive mode) and requests that break the schema (negative mode) are sent.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from .conftest import Service

EXAMPLES = {GenerationMode.POSITIVE: 10, GenerationMode.NEGATIVE: 6}
"""Examples per operation and mode: bounded to keep the test well under a minute."""


# schemathesis's own generators touch the global `random` module, which Hypothesis flags as deprecated.
@pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
def test_no_generated_request_gets_a_server_error(service: Service) -> None:
    key = service.key("fuzz")
    headers = {"Authorization": f"Bearer {key}"}
    schema = schemathesis.openapi.from_url(f"{service.url}/openapi.json")
    checked: list[str] = []
    failures: list[str] = []
    statuses: dict[GenerationMode, dict[int, int]] = {mode: {} for mode in GenerationMode}
    operations = [result.ok() for result in schema.get_all_operations()]
    current = [GenerationMode.POSITIVE]
    for operation, mode in [(op, mode) for op in operations for mode in GenerationMode]:
        current[0] = mode

        @settings(
            max_examples=EXAMPLES[mode],
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def fuzz(case: Any) -> None:
            response = case.call(base_url=service.url, headers=headers, timeout=30)
            tally = statuses[current[0]]
            tally[response.status_code] = tally.get(response.status_code, 0) + 1
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}")

        try:
            fuzz()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # an operation without inputs has nothing to break
            continue
        checked.append(f"{operation.method.upper()} {operation.path} {mode.value}")
    assert not failures, "\n".join(failures)
    assert len(checked) >= 26, checked
    valid, broken = statuses[GenerationMode.POSITIVE], statuses[GenerationMode.NEGATIVE]
    assert valid.get(401, 0) == 0, valid  # the key was sent: valid requests reached the handlers
    assert sum(n for code, n in valid.items() if code < 300) >= 20, valid
    assert sum(n for code, n in broken.items() if 400 <= code < 500) >= 20, broken
