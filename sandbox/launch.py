"""Set up a sandboxed child from inside it, then exec the real program.

    python -I -S launch.py STEP... -- PROGRAM ARGS...

perfagent starts this script instead of setting limits in `preexec_fn`, which Python documents as unsafe when the
parent has threads (batch workers, Ray). Here the process is fresh and single-threaded, so it may do anything before
exec. Each STEP is NAME=VALUE, applied in order:

- RLIMIT_AS=SOFT:HARD (any resource.RLIMIT_* name);
- cgroup=FOLDER[:FOLDER]: join these cgroups (sandbox/cgroups.py; before any namespace or Landlock makes them
  unreachable);
- nproc=N: RLIMIT_NPROC at N above the processes already running, where no cgroup can cap the count;
- markfd=N: move the inherited descriptor N to 3, where the child looks for its mark channel (sandbox/marks.py);
- tmpfs=FOLDER: mount a fresh tmpfs there, in the mount namespace the child is already in (unshare's);
- landlock=JSON, {"read": [paths], "write": [paths], "site": folder}: from now on the file system may be read only
  under "read" and written only under "write", TCP is closed, and no signal reaches a process outside the sandbox.

Started with -S (no site-packages: 20 ms less per child), so it uses the stdlib only, and landlockpy from "site"; it
imports json only for Landlock (10 ms less per child for the rest), and ctypes only for a mount or Landlock. No step
starts a process: the kernel's count of the child's tasks (sandbox/cgroups.py) is the program's and the sandbox's.
"""
import os
import resource
import sys

_FILE_RIGHTS = ("EXECUTE", "WRITE_FILE", "READ_FILE", "TRUNCATE", "IOCTL_DEV")  # the rights a rule on a file may hold
_MS_NOSUID, _MS_NODEV = 2, 4  # mount(2) flags


def _tmpfs(folder: str) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)  # the C library the interpreter is linked with
    if libc.mount(b"tmpfs", folder.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV, b"mode=1777") != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"cannot mount a tmpfs on {folder}: {os.strerror(errno)}")


def _landlock(read: list, write: list, site: str) -> None:
    import ctypes.util

    # landlockpy looks the C library up with find_library, which starts ldconfig (a process, and 10 ms); None is the
    # C library the interpreter is linked with
    ctypes.util.find_library = lambda name: None
    sys.path.insert(0, site)
    from landlockpy import AccessFS, AccessNet, Ruleset, Scope

    readable = AccessFS.EXECUTE | AccessFS.READ_FILE | AccessFS.READ_DIR
    on_files = AccessFS(0)
    for name in _FILE_RIGHTS:
        on_files |= getattr(AccessFS, name, AccessFS(0))
    with Ruleset(handled_net=AccessNet.BIND_TCP | AccessNet.CONNECT_TCP,
                 scoped=Scope.SIGNAL | Scope.ABSTRACT_UNIX_SOCKET) as ruleset:
        everything = ruleset.handled_fs
        for paths, rights in ((read, readable), (write, everything)):
            for path in paths:
                if os.path.exists(path):
                    ruleset.allow_path(path, rights if os.path.isdir(path) else rights & on_files)
        ruleset.restrict()


def main(argv: list) -> None:
    split = argv.index("--")
    for step in argv[1:split]:
        name, value = step.split("=", 1)
        if name.startswith("RLIMIT_"):
            soft, hard = value.split(":")
            resource.setrlimit(getattr(resource, name), (int(soft), int(hard)))
        elif name == "cgroup":
            for folder in value.split(":"):
                with open(os.path.join(folder, "cgroup.procs"), "w") as f:
                    f.write(str(os.getpid()))
        elif name == "nproc":
            running = sum(1 for p in os.listdir("/proc") if p.isdigit())
            resource.setrlimit(resource.RLIMIT_NPROC, (running + int(value),) * 2)
        elif name == "markfd":
            if int(value) != 3:
                os.dup2(int(value), 3)
                os.close(int(value))
        elif name == "tmpfs":
            _tmpfs(value)
        elif name == "landlock":
            import json

            _landlock(**json.loads(value))
        else:
            raise ValueError(f"unknown step {step!r}")
    program = argv[split + 1:]
    os.execvp(program[0], program)


if __name__ == "__main__":
    try:
        main(sys.argv)
    except (OSError, ValueError, ImportError) as exc:
        print(f"perfagent sandbox: cannot start the child: {exc}", file=sys.stderr)
        sys.exit(126)  # the shell's "cannot execute"
