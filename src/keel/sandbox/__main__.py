"""Run code in a sandbox, or serve a backend over the remote-sandbox interface.

Usage::

    python -m keel.sandbox run 'print(6 * 7)'                 # on KEEL_SANDBOX_BACKEND (default bubblewrap)
    python -m keel.sandbox run --shell 'uname -a; ls /'
    python -m keel.sandbox run --network api.example.com:443 --shell 'curl -sI https://api.example.com'
    python -m keel.sandbox serve --backend bubblewrap --port 8750   # token from KEEL_SANDBOX_TOKEN

``serve --backend unsafe-local`` also needs ``--allow-unsafe``: use it only where something else is the
boundary, as in the gVisor pods of ``deploy/k8s/sandbox``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ..exceptions import ConfigError
from ._types import ExecutionRequest, Language, Limits, SandboxBackend
from .tools import BACKENDS, get_backend

__all__ = ["main", "parser"]


def parser() -> argparse.ArgumentParser:
    """The command line: ``run`` and ``serve``."""
    top = argparse.ArgumentParser(prog="python -m keel.sandbox", description="keel's code sandbox")
    commands = top.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run code once and print the result as JSON")
    run.add_argument("code")
    run.add_argument("--shell", action="store_true", help="the code is a shell script")
    run.add_argument("--backend", choices=BACKENDS, default=None)
    run.add_argument("--timeout", type=float, default=10.0, help="wall-clock seconds; default 10")
    run.add_argument(
        "--network",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="allow egress to HOST:PORT through the sandbox's proxy (repeatable); default no network",
    )
    serve = commands.add_parser("serve", help="serve a backend over HTTP (POST /v1/executions)")
    serve.add_argument("--backend", choices=BACKENDS, default=None)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8750)
    serve.add_argument("--max-concurrent", type=int, default=4)
    serve.add_argument(
        "--workspace-dir",
        default=None,
        help="where workspaces are created (wasm, unsafe-local; bubblewrap keeps its own inside the sandbox)",
    )
    serve.add_argument("--allow-unsafe", action="store_true", help="permit the unsafe-local backend")
    return top


def _backend(name: str | None, workspace_dir: str | None, allow_unsafe: bool) -> SandboxBackend:
    chosen = name or os.environ.get("KEEL_SANDBOX_BACKEND") or "bubblewrap"
    if chosen == "unsafe-local":
        from .local import UnsafeLocalBackend

        if not allow_unsafe:
            raise ConfigError(
                "the unsafe-local backend runs code without isolation; add --allow-unsafe only where something "
                "else is the boundary (a gVisor pod with no network, as in deploy/k8s/sandbox)"
            )
        return UnsafeLocalBackend(acknowledge_unsafe=allow_unsafe, workspace_dir=workspace_dir)
    if chosen == "bubblewrap":
        from .bubblewrap import BubblewrapBackend

        return BubblewrapBackend()  # its workspace is a tmpfs inside the sandbox
    if chosen == "wasm":
        from .wasm import WasmBackend

        return WasmBackend(workspace_dir=workspace_dir)
    return get_backend(chosen)


def _errors(exc: ValueError) -> list[dict[str, object]]:
    errors = getattr(exc, "errors", None)
    return list(errors()) if callable(errors) else [{"msg": str(exc)}]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = parser().parse_args(argv)
    try:
        if args.command == "run":
            backend = get_backend(args.backend)
            language: Language = "shell" if args.shell else "python"
            try:
                request = ExecutionRequest(
                    language=language, code=args.code, limits=Limits(timeout_s=args.timeout), network=args.network
                )
            except ValueError as exc:
                problems = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in _errors(exc))
                print(f"keel sandbox: {problems}", file=sys.stderr)
                return 2
            print(backend.run(request).model_dump_json(indent=2))
            return 0
        backend = _backend(args.backend, args.workspace_dir, args.allow_unsafe)
        reason = backend.unavailable_reason()
        if reason is not None:
            print(f"keel sandbox: {reason}", file=sys.stderr)
            return 2
        from .remote import serve

        token = os.environ.get("KEEL_SANDBOX_TOKEN") or None
        server = serve(backend, host=args.host, port=args.port, token=token, max_concurrent=args.max_concurrent)
        print(f"keel sandbox: serving {backend.name} on {server.url}", file=sys.stderr)
        server.serve_forever()
    except ConfigError as exc:
        print(f"keel sandbox: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
