"""Write the bubblewrap sandbox's seccomp filter, as classic BPF, to standard output.

Run by the system's ``/usr/bin/python3`` (Debian package ``python3-seccomp`` provides the binding to
libseccomp; keel's own interpreter may be a virtualenv that cannot import it), never imported by keel.
Everything is allowed except what a sandboxed program has no business doing; denied calls fail with
EPERM (``clone3`` with ENOSYS, so the C library falls back to ``clone``, whose flags can be checked).
"""

from __future__ import annotations

import errno
import socket
import sys

import seccomp

CLONE_NAMESPACE_FLAGS = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)
TIOCSTI = 0x5412

DENIED = (
    # Tracing and reading other processes' memory.
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    # New namespaces, mounts and root changes.
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "fsopen", "fsmount", "fsconfig",
    "move_mount", "open_tree", "mount_setattr",
    # Kernel attack surface a program never needs.
    "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key", "io_uring_setup",
    "io_uring_enter", "io_uring_register", "open_by_handle_at", "name_to_handle_at", "kexec_load",
    "kexec_file_load", "init_module", "finit_module", "delete_module", "iopl", "ioperm", "swapon",
    "swapoff", "reboot", "acct", "quotactl", "lookup_dcookie", "syslog", "vhangup", "settimeofday",
    "clock_settime", "clock_adjtime", "adjtimex",
)  # fmt: skip


AF_LIMIT = 64  # above every address family Linux defines (AF_MAX is 46)


def build(inet: bool = False) -> seccomp.SyscallFilter:
    """The filter: allow by default, deny the calls above and every socket family but AF_UNIX.

    With `inet` (allow-listed egress), AF_INET and AF_INET6 are allowed too: the sandbox's network
    namespace has only its own loopback, where the proxy's port is.
    """
    filt = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    eperm = seccomp.ERRNO(errno.EPERM)
    for name in DENIED:
        try:
            filt.add_rule(eperm, name)
        except (RuntimeError, ValueError):  # a call this kernel or libseccomp does not know
            continue
    # Only local (AF_UNIX) sockets: no AF_INET/AF_INET6 (network), AF_NETLINK (kernel), AF_PACKET (raw).
    filt.add_rule(eperm, "socketpair", seccomp.Arg(0, seccomp.NE, socket.AF_UNIX))
    if not inet:
        filt.add_rule(eperm, "socket", seccomp.Arg(0, seccomp.NE, socket.AF_UNIX))
    else:
        allowed = {socket.AF_UNIX, socket.AF_INET, socket.AF_INET6}
        for family in range(AF_LIMIT):
            if family not in allowed:
                filt.add_rule(eperm, "socket", seccomp.Arg(0, seccomp.EQ, family))
        filt.add_rule(eperm, "socket", seccomp.Arg(0, seccomp.GE, AF_LIMIT))
    for flag in CLONE_NAMESPACE_FLAGS:
        filt.add_rule(eperm, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    filt.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    filt.add_rule(eperm, "ioctl", seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, TIOCSTI))
    return filt


if __name__ == "__main__":
    build(inet="--inet" in sys.argv[1:]).export_bpf(sys.stdout)
