"""The escape suite: each attempt to leave or exhaust the sandbox, against every isolating backend.

Every test runs real code in a real sandbox and checks the host afterwards: the secret was not
printed, the file was not created, the listener accepted nothing, no process is left running.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from keel.sandbox import ExecutionRequest, ExecutionResult, Limits, SandboxBackend

from .conftest import SESSION_UID

PROJECT = Path(__file__).resolve().parents[2]


def run(backend: SandboxBackend, code: str, **limits: Any) -> ExecutionResult:
    return backend.run(ExecutionRequest(language="python", code=code, limits=Limits(**limits)))


def report(result: ExecutionResult) -> dict[str, Any]:
    """The JSON object the program printed on its last line."""
    assert result.stop_reason is None, result
    lines = result.stdout.strip().splitlines()
    assert lines, f"no output: {result}"
    found: dict[str, Any] = json.loads(lines[-1])
    return found


def sandbox_processes() -> list[int]:
    """Host processes running as the sandbox uid of this test run (used by nothing else when tests run as root)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        if int(uid_line.split()[1]) == SESSION_UID:
            pids.append(int(entry))
    return pids


# -- reading host secrets ------------------------------------------------------------------------
def test_etc_shadow_root_and_the_project_cannot_be_read(backend: SandboxBackend) -> None:
    code = f"""
import json, os
out = {{}}
for path in ["/etc/shadow", "/root", "{PROJECT}/pyproject.toml", "{PROJECT}"]:
    try:
        out[path] = "read: " + (str(os.listdir(path)) if os.path.isdir(path) else open(path).read())
    except OSError as e:
        out[path] = "denied: " + type(e).__name__
print(json.dumps(out))
"""
    out = report(run(backend, code))
    assert len(out) == 4
    for path, outcome in out.items():
        assert outcome.startswith("denied"), f"{path}: {outcome}"


def test_host_processes_and_environment_secrets_are_not_visible(
    backend: SandboxBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = f"s3cret-{uuid.uuid4().hex}"
    monkeypatch.setenv("KEEL_TEST_SECRET", secret)
    code = """
import json, os
seen = {"environ": dict(os.environ), "procs": {}}
try:
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
except OSError:
    pids = []
for pid in pids:
    entry = {}
    for name in ("cmdline", "environ"):
        try:
            entry[name] = open(f"/proc/{pid}/{name}", "rb").read().decode(errors="replace")
        except OSError as e:
            entry[name] = "denied"
    seen["procs"][pid] = entry
print(json.dumps(seen))
"""
    result = run(backend, code, max_output_bytes=4 * 1024 * 1024)
    seen = report(result)
    assert secret not in result.stdout
    assert "KEEL_TEST_SECRET" not in seen["environ"]
    # Only the sandbox's own processes (bubblewrap's init and the program) are visible, never pytest.
    assert len(seen["procs"]) <= 3, seen["procs"].keys()
    assert all("pytest" not in p["cmdline"] for p in seen["procs"].values())


# -- writing outside the workspace ---------------------------------------------------------------
def test_usr_etc_and_the_project_are_read_only_while_the_workspace_is_writable(backend: SandboxBackend) -> None:
    tag = uuid.uuid4().hex[:12]
    targets = [f"/usr/keel-escape-{tag}", f"/etc/keel-escape-{tag}", f"{PROJECT}/keel-escape-{tag}", f"/keel-{tag}"]
    code = f"""
import json
out = {{}}
for path in {targets!r}:
    try:
        with open(path, "w") as f:
            f.write("escaped")
        out[path] = "written"
    except OSError as e:
        out[path] = "denied: " + type(e).__name__
with open("inside.txt", "w") as f:
    f.write("ok")
print(json.dumps(out))
"""
    result = run(backend, code)
    out = report(result)
    for path in targets:
        assert out[path].startswith("denied"), f"{path}: {out[path]}"
        assert not os.path.exists(path), f"{path} was created on the host"
    assert [(f.path, f.size) for f in result.files] == [("inside.txt", 2)]


def test_symlink_and_dotdot_escapes_stay_in_the_workspace(backend: SandboxBackend) -> None:
    tag = uuid.uuid4().hex[:12]
    code = f"""
import json, os
out = {{}}
for name, target in [("to_shadow", "/etc/shadow"), ("to_root", "/"), ("to_project", "{PROJECT}")]:
    try:
        os.symlink(target, name)
    except OSError as e:
        out["link " + name] = "denied: " + type(e).__name__
for label, path, mode in [
    ("read via link", "to_shadow", "r"),
    ("write via link", "to_root/etc/keel-escape-{tag}", "w"),
    ("write via project link", "to_project/keel-escape-{tag}", "w"),
    ("write via ..", "../../../tmp/../etc/keel-escape-{tag}", "w"),
    ("write via ../project", "../../..{PROJECT}/keel-escape-{tag}", "w"),
]:
    try:
        with open(path, mode) as f:
            f.read() if mode == "r" else f.write("escaped")
        out[label] = "done"
    except OSError as e:
        out[label] = "denied: " + type(e).__name__
print(json.dumps(out))
"""
    result = run(backend, code)
    out = report(result)
    assert [k for k, v in out.items() if not v.startswith("denied")] == [], out
    assert not os.path.exists(f"/etc/keel-escape-{tag}")
    assert not os.path.exists(PROJECT / f"keel-escape-{tag}")
    # The host lists the links without following them.
    links = {f.path: f for f in result.files}
    for name in ("to_shadow", "to_root", "to_project"):
        if name in links:
            assert links[name].kind == "symlink"


def test_request_file_paths_that_leave_the_workspace_are_refused() -> None:
    for bad in ("../escape.txt", "/etc/escape.txt", "a/../../escape.txt", "nul\x00.txt", ""):
        with pytest.raises(ValueError, match="file path"):
            ExecutionRequest(language="python", code="", files={bad: "x"})


# -- network -------------------------------------------------------------------------------------
def test_a_listener_on_host_loopback_is_unreachable(backend: SandboxBackend) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    code = f"""
import json, socket
try:
    s = socket.create_connection(("127.0.0.1", {port}), timeout=2)
    s.sendall(b"escaped")
    out = "connected"
except (OSError, AttributeError) as e:  # AttributeError: WebAssembly's socket module has no getaddrinfo
    out = "denied: " + type(e).__name__ + " " + str(e)
print(json.dumps({{"connect": out}}))
"""
    try:
        out = report(run(backend, code))
        assert out["connect"].startswith("denied"), out
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing reached the listener
    finally:
        listener.close()


def test_raw_inet_netlink_sockets_unshare_and_ptrace_are_denied(backend: SandboxBackend) -> None:
    code = """
import json, socket
out = {}
for name, family, kind in [
    ("tcp", "AF_INET", "SOCK_STREAM"), ("udp6", "AF_INET6", "SOCK_DGRAM"), ("raw", "AF_INET", "SOCK_RAW"),
    ("packet", "AF_PACKET", "SOCK_RAW"), ("netlink", "AF_NETLINK", "SOCK_RAW"),
]:
    try:
        socket.socket(getattr(socket, family), getattr(socket, kind)).close()
        out[name] = "open"
    except (OSError, AttributeError) as e:
        out[name] = "denied: " + type(e).__name__
try:
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    out["unshare"] = "denied" if libc.unshare(0x10000000) != 0 else "allowed"
    out["unshare_net"] = "denied" if libc.unshare(0x40000000) != 0 else "allowed"
    out["ptrace"] = "denied" if libc.ptrace(0, 0, 0, 0) != 0 else "allowed"
except ImportError:
    out["unshare"] = out["unshare_net"] = out["ptrace"] = "denied: no ctypes"
print(json.dumps(out))
"""
    out = report(run(backend, code))
    assert len(out) == 8
    assert [k for k, v in out.items() if not v.startswith("denied")] == [], out


def test_shell_cannot_make_namespaces_or_reach_the_network(bubblewrap: SandboxBackend) -> None:
    script = """
unshare -U true 2>/dev/null && echo "unshare -U: allowed" || echo "unshare -U: denied"
unshare -n true 2>/dev/null && echo "unshare -n: allowed" || echo "unshare -n: denied"
(exec 3<>/dev/tcp/127.0.0.1/22) 2>/dev/null && echo "tcp: allowed" || echo "tcp: denied"
id -u
"""
    result = bubblewrap.run(ExecutionRequest(language="shell", code=script))
    lines = result.stdout.splitlines()
    assert lines[:3] == ["unshare -U: denied", "unshare -n: denied", "tcp: denied"], result
    assert lines[3] != "0", "the sandbox ran as uid 0"


# -- resources -----------------------------------------------------------------------------------
def test_a_fork_bomb_is_capped_and_leaves_nothing_running(backend: SandboxBackend) -> None:
    code = """
import json, os, time
forked, error = 0, None
for _ in range(1000):
    try:
        pid = os.fork()
    except (OSError, AttributeError) as e:  # AttributeError: no fork at all (WebAssembly)
        error = type(e).__name__
        break
    if pid == 0:
        time.sleep(600)
        os._exit(0)
    forked += 1
print(json.dumps({"forked": forked, "error": error}))
"""
    result = run(backend, code, processes=32, timeout_s=30)
    out = report(result)
    assert out["error"] is not None and out["forked"] < 32, out
    if os.geteuid() == 0:
        assert sandbox_processes() == [], "sandbox processes outlived the sandbox"


def test_a_shell_fork_bomb_hits_the_process_cap_and_dies_with_the_sandbox(bubblewrap: SandboxBackend) -> None:
    limits = Limits(processes=32, timeout_s=10)
    result = bubblewrap.run(ExecutionRequest(language="shell", code="b() { b | b & }; b; sleep 3", limits=limits))
    assert "fork: retry: Resource temporarily unavailable" in result.stderr, result
    if os.geteuid() == 0:
        assert sandbox_processes() == [], "sandbox processes outlived the sandbox"


def test_a_1_gib_allocation_fails_with_stop_reason_memory(backend: SandboxBackend) -> None:
    result = run(backend, "x = bytearray(1 << 30)\nprint('allocated')", memory_mb=256)
    assert result.stop_reason == "memory", result
    assert "allocated" not in result.stdout and "MemoryError" in result.stderr


def test_a_cpu_loop_is_stopped_by_the_cpu_limit(backend: SandboxBackend) -> None:
    result = run(backend, "while True:\n    pass", cpu_s=1, timeout_s=60)
    assert result.stop_reason == "cpu", result
    assert result.exit_code != 0


def test_a_cpu_loop_is_stopped_by_the_wall_clock(backend: SandboxBackend) -> None:
    result = run(backend, "while True:\n    pass", cpu_s=600, timeout_s=1)
    assert result.stop_reason == "timeout", result


def test_a_sleeping_program_is_stopped_by_the_wall_clock(bubblewrap: SandboxBackend) -> None:
    # the wall clock includes the interpreter's start: 10 s leaves it room on a loaded machine, so that the
    # line printed before the sleep is always there to check that output survives the stop
    result = run(bubblewrap, "import time\nprint('start', flush=True)\ntime.sleep(600)", timeout_s=10)
    assert result.stop_reason == "timeout" and result.stdout == "start\n", result
    if os.geteuid() == 0:
        assert sandbox_processes() == []


def test_a_100_mib_file_stops_at_the_file_size_limit(backend: SandboxBackend) -> None:
    code = """
chunk = b"x" * (1 << 20)
with open("big.bin", "wb") as f:
    for _ in range(100):
        f.write(chunk)
        f.flush()
print("wrote 100 MiB")
"""
    result = run(backend, code, file_size_mb=8)
    assert result.stop_reason == "file_size", result
    assert all(f.size <= 8 * 1024 * 1024 for f in result.files), result.files
    if backend.name == "bubblewrap":  # the rlimit stops the write itself
        assert "wrote 100 MiB" not in result.stdout and "File too large" in result.stderr
        assert [(f.path, f.size) for f in result.files] == [("big.bin", 8 * 1024 * 1024)]
    else:  # WASI has no file-size limit: the file is removed after the run
        assert result.files == []


def test_an_output_flood_is_cut_and_stopped(backend: SandboxBackend) -> None:
    result = run(backend, "while True:\n    print('x' * 1000)", max_output_bytes=1000, kill_output_bytes=1 << 20)
    assert result.stop_reason == "output_size" and result.stdout_truncated, result
    assert len(result.stdout) < 1200 and "the limit is 1000 bytes per stream" in result.stdout


def test_tmp_is_a_small_private_tmpfs(bubblewrap: SandboxBackend) -> None:
    code = """
chunk = b"x" * (1 << 20)
with open("/tmp/big.bin", "wb") as f:
    for _ in range(100):
        f.write(chunk)
        f.flush()
"""
    result = run(bubblewrap, code, file_size_mb=512, tmp_mb=8)
    assert result.stop_reason == "file_size" and "No space left on device" in result.stderr, result


def test_unreadable_directories_and_links_in_the_workspace_are_removed_without_touching_targets(
    bubblewrap: SandboxBackend, workspace_base: str
) -> None:
    target = Path(tempfile.mkdtemp(prefix="keel-link-target-"))
    (target / "keep.txt").write_text("keep")
    os.chmod(target, 0o755)
    code = f"""
import os
os.makedirs("locked/inner")
open("locked/inner/f.txt", "w").write("x")
os.symlink("{target}", "locked/to_target")
os.chmod("locked/inner", 0)
os.chmod("locked", 0)
"""
    try:
        result = run(bubblewrap, code)
        assert result.exit_code == 0, result
        assert os.listdir(workspace_base) == []  # the workspace, locked directories included, is gone
        assert (target / "keep.txt").read_text() == "keep"
        assert oct(target.stat().st_mode & 0o777) == oct(0o755)  # the link's target was not chmod-ed
    finally:
        shutil.rmtree(target)


# -- bounded in total: deep trees, the workspace's size, memory across processes, what the mounts tell --
def host_files_of_the_sandbox_uid() -> list[str]:
    """Entries in the host's temporary directory (two levels deep) owned by this session's sandbox uid."""
    found = []
    top = tempfile.gettempdir()
    for level_one in os.scandir(top):
        paths = [level_one]
        if level_one.is_dir(follow_symlinks=False):
            with contextlib.suppress(OSError):
                paths += list(os.scandir(level_one.path))
        for entry in paths:
            try:
                if entry.stat(follow_symlinks=False).st_uid == SESSION_UID:
                    found.append(entry.path)
            except OSError:
                continue
    return found


def host_cgroups_of_the_sandbox(owner: int | None = None) -> list[str]:
    """Per-execution cgroups this process's executions left on the host (named keel-sandbox-<owner pid>-...).

    Only this process's: another keel on the machine (another test suite) may be mid-execution.
    """
    prefix = f"keel-sandbox-{os.getpid() if owner is None else owner}-"
    left = []
    for root in CGROUP_ROOTS:
        with contextlib.suppress(OSError):
            left += [os.path.join(root, n) for n in os.listdir(root) if n.startswith(prefix)]
    return left


CGROUP_ROOTS = ("/sys/fs/cgroup", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids")


def assert_host_untouched(workspace_base: str) -> None:
    assert os.listdir(workspace_base) == [], "a workspace was left on the host"
    assert host_files_of_the_sandbox_uid() == [], "the sandbox left files in the host's temporary directory"
    if os.geteuid() == 0:
        assert sandbox_processes() == [], "sandbox processes outlived the sandbox"


def test_1500_nested_directories_give_a_result_and_leave_nothing_on_the_host(
    backend: SandboxBackend, workspace_base: str
) -> None:
    code = """
import os
path = "d"
for _ in range(1500):
    os.mkdir(path)
    path += "/d"
open(path[:-2] + "/leaf.txt", "w").write("deep")
print("made 1500")
"""
    result = run(backend, code, timeout_s=30)
    assert result.exit_code == 0 and result.stdout == "made 1500\n", result
    assert result.files and result.files[0].path == "d" and result.files[0].kind == "dir"
    assert len(result.files) <= 200
    assert_host_untouched(workspace_base)


def test_the_workspace_is_bounded_in_total_and_lives_off_the_host_disk(
    bubblewrap: SandboxBackend, workspace_base: str
) -> None:
    # Each file stays under file_size_mb; together they would be 300 MiB.
    code = """
import json, os
chunk = b"x" * (1 << 20)
written, error = 0, None
try:
    for i in range(30):
        with open(f"part{i}.bin", "wb") as f:
            for _ in range(10):
                f.write(chunk)
                f.flush()
                written += 1
except OSError as e:
    error = e.strerror
fs = os.statvfs(".")
print(json.dumps({"written_mib": written, "error": error, "size": fs.f_blocks * fs.f_frsize}))
"""
    result = run(bubblewrap, code, file_size_mb=16, workspace_mb=32, memory_mb=512)
    out = report(result)
    assert out["error"] == "No space left on device" and out["written_mib"] <= 32, out
    assert out["size"] == 32 * 1024 * 1024, out  # the workspace is its own 32 MiB file system
    assert sum(f.size for f in result.files) <= 32 * 1024 * 1024, result.files
    assert_host_untouched(workspace_base)


def memory_cgroup_writable() -> bool:
    v2 = Path("/sys/fs/cgroup/cgroup.subtree_control")
    if v2.exists():
        return os.access(v2.parent, os.W_OK) and "memory" in v2.read_text().split()
    return os.access("/sys/fs/cgroup/memory", os.W_OK)


_HOLDERS = """
import json, os
children = []
for _ in range(8):
    ready_r, ready_w = os.pipe()
    hold_r, hold_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r); os.close(hold_w)
        block = b"x" * (64 << 20)  # written, so every page is resident
        os.write(ready_w, b"1")
        os.read(hold_r, 1)  # hold the memory until the parent has heard from every child
        os._exit(0)
    os.close(ready_w); os.close(hold_r)
    children.append((pid, ready_r, hold_w))
ready = [os.read(ready_r, 1) == b"1" for _, ready_r, _ in children]
# Every child that is ready and still alive now holds its block at this same moment.
alive = [os.waitpid(pid, os.WNOHANG) == (0, 0) for pid, _, _ in children]
held = sum(r and a for r, a in zip(ready, alive))
for pid, _, hold_w in children:
    try:
        os.write(hold_w, b"1")  # a byte, not a close: later children hold copies of earlier write ends
    except OSError:
        pass  # that child is gone
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass  # reaped above
print(json.dumps({"held": held}))
"""


def test_memory_is_bounded_across_all_of_a_runs_processes(bubblewrap: SandboxBackend, workspace_base: str) -> None:
    if not memory_cgroup_writable():
        pytest.skip("no writable memory cgroup here: memory_mb holds per process only (memory_limit 'rlimit')")
    # Each process stays under memory_mb; together eight of them would hold 512 MiB.
    result = run(bubblewrap, _HOLDERS, memory_mb=160, timeout_s=30)
    assert result.memory_limit in ("cgroup-v2", "cgroup-v1"), result
    assert result.stop_reason == "memory", result
    lines = result.stdout.strip().splitlines()
    assert lines and json.loads(lines[-1])["held"] <= 2, result  # 160 MiB total: at most two 64 MiB blocks
    assert_host_untouched(workspace_base)
    assert host_cgroups_of_the_sandbox() == [], "a per-execution cgroup was left on the host"


def test_without_a_cgroup_the_result_says_memory_holds_per_process(workspace_base: str) -> None:
    from keel.sandbox import BubblewrapBackend

    backend = BubblewrapBackend(uid=SESSION_UID, use_cgroup=False)
    result = run(backend, "x = bytearray(1 << 30)", memory_mb=256)
    assert result.memory_limit == "rlimit-per-process" and result.stop_reason == "memory", result
    assert_host_untouched(workspace_base)


def test_mountinfo_does_not_show_host_paths_of_the_workspace(bubblewrap: SandboxBackend, workspace_base: str) -> None:
    result = bubblewrap.run(ExecutionRequest(language="shell", code="cat /proc/self/mountinfo"))
    assert result.exit_code == 0, result
    mounts = result.stdout
    assert tempfile.gettempdir() + "/" not in mounts and workspace_base not in mounts, mounts
    assert str(PROJECT) not in mounts, mounts
    workspace = [line for line in mounts.splitlines() if line.split()[4] == "/workspace"]
    assert len(workspace) == 1 and " - tmpfs " in workspace[0], mounts
    assert_host_untouched(workspace_base)


def test_the_cgroups_a_killed_keel_process_left_are_removed_by_the_next_execution(
    bubblewrap: SandboxBackend, workspace_base: str
) -> None:
    if not memory_cgroup_writable():
        pytest.skip("no writable memory cgroup here: nothing of keel's is left in one")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    owner = int(dead.stdout)  # a keel process that was kill -9'd mid-execution, its cgroups left behind
    made = []
    for root in CGROUP_ROOTS:
        path = os.path.join(root, f"keel-sandbox-{owner}-0123456789ab")
        with contextlib.suppress(OSError):
            os.mkdir(path)
            made.append(path)
    assert made, "could not make a cgroup to stand for the leftover"
    result = run(bubblewrap, "print('ok')")
    assert result.stdout == "ok\n", result
    assert host_cgroups_of_the_sandbox(owner) == [], "a dead keel process's cgroups were not removed"
    assert host_cgroups_of_the_sandbox() == []
