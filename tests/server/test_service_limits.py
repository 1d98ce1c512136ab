"""Rate limits per API key, against a real `keel serve` started with a small limit."""

from __future__ import annotations

from pathlib import Path

from .conftest import start_service, stop_service


def test_each_key_has_its_own_rate_limit_and_429_says_when_to_retry(tmp_path: Path) -> None:
    service = start_service(tmp_path, "--anomaly-window", "0", "--rate", "0.5", "--burst", "3")
    try:
        first, second = service.key("acme"), service.key("acme")
        with service.client(first) as a, service.client(second) as b:
            answers = [a.get("/v1/runs") for _ in range(4)]
            assert [r.status_code for r in answers] == [200, 200, 200, 429]
            limited = answers[-1]
            assert limited.json()["error"] == "rate_limited" and "0.5 a second" in limited.json()["message"]
            assert int(limited.headers["Retry-After"]) >= 1
            assert b.get("/v1/runs").status_code == 200  # another key of the same tenant is not limited
            assert a.get("/healthz").status_code == 200  # health checks carry no key and no limit
    finally:
        stop_service(service)
