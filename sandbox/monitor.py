"""Child side of behaviour judging: an audit hook (PEP 578) that logs what the code does that a user would not want.

Loaded at start-up of every Python process in the sandbox (sandbox/startup/sitecustomize.py), in the target's own
interpreter, so it uses the stdlib only. Audit hooks see the call before the operating system is asked, whatever names
the code used to reach it, and also when the sandbox then makes the call fail. Logged, once each, as JSON lines:

- "write": opening for writing, creating, renaming or deleting a path outside the allowed roots, or opening a handle
  on a folder outside them (os.open with dir_fd writes by a name the "open" event does not resolve);
- "process": starting a program (subprocess, os.system, exec, spawn, fork);
- "network": connecting, binding or sending to an address, or looking up a host name;
- "native": loading a shared library with ctypes;
- "signal": signalling another process;
- "secret": looking up a credential variable (they are never set in the sandbox), or reading a credential file.

The parent (sandbox/behaviour.py) compares a candidate's log with the unmodified code's. A hook is not a security
boundary, and the sandbox levels stay the enforcement; the hook refuses only to let the code touch its own log.
"""
import json
import os
import re
import sys
import threading

# names whose values perfagent keeps out of every sandboxed environment (sandbox/run.py imports this)
SECRET = re.compile(r"(_API_KEY|_TOKEN|_SECRET|_PASSWORD|^AWS_|^AZURE_|^GOOGLE_APPLICATION_CREDENTIALS$)", re.I)
# credentials under the home folder that sandboxed code has no business reading (sandbox/isolation.py hides them)
CREDENTIAL_FILES = (".ssh", ".aws", ".azure", ".config/gcloud", ".kube", ".docker", ".gnupg", ".netrc",
                    ".git-credentials", ".pypirc", ".npmrc", ".config/gh", ".local/share/keyrings")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_HARMLESS_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/shm/", "/dev/tty")
_MAX_LINES = 200


class _Monitor:
    def __init__(self, log_path, roots):
        self.log_path = os.path.realpath(log_path)
        self.log_name = os.path.basename(self.log_path)
        self.roots = tuple(os.path.join(os.path.realpath(r), "") for r in roots if r)
        home = os.path.expanduser("~")
        self.credentials = tuple(os.path.join(home, name) for name in CREDENTIAL_FILES)
        self.fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.seen = set()
        self.inside = threading.local()  # in a handler on this thread: its own calls raise events too

    def log(self, kind, subject, detail):
        key = (kind, subject)
        if key in self.seen or len(self.seen) >= _MAX_LINES:
            return
        self.seen.add(key)
        line = json.dumps({"kind": kind, "subject": subject, "detail": detail}) + "\n"
        try:
            os.write(self.fd, line.encode("utf-8", "replace"))
        except OSError:
            pass

    def path(self, value):
        if isinstance(value, bytes):
            value = os.fsdecode(value)
        return os.path.realpath(value) if isinstance(value, str) else None

    def outside(self, path):
        """True for a path outside the roots, refusing any touch of the log itself."""
        if path == self.log_path:
            raise PermissionError("perfagent's behaviour log is not the code's to touch")
        own_peak = path == f"/proc/{os.getpid()}/clear_refs"  # resets this process's own RSS peak (the harness)
        return not (path + "/").startswith(self.roots) and not path.startswith(_HARMLESS_DEVICES) and not own_peak

    def written(self, value, how):
        path = self.path(value)
        if path and self.outside(path):
            self.log("write", os.path.dirname(path), f"{how} {path}")

    # -- events ------------------------------------------------------------------------------------------------
    def on_open(self, args):
        target, mode, flags = args
        if isinstance(target, int):
            return
        writing = any(c in mode for c in "wax+") if mode else bool(flags & _WRITE_FLAGS)
        if writing:
            if str(target).endswith(".pyc") or ".pyc." in str(target):
                caller = sys._getframe(2).f_code.co_filename  # the bytecode cache, written by importlib itself
                if "importlib" in caller:
                    return
            self.written(target, "opened for writing")
        else:
            name = os.fsdecode(target) if isinstance(target, bytes) else str(target)
            if name.endswith(self.log_name) and self.path(name) == self.log_path:
                raise PermissionError("perfagent's behaviour log is not the code's to read")
            if name.startswith(self.credentials):
                self.log("secret", name, f"read the credential file {name}")
            if mode is None:  # os.open: a directory's handle writes inside it (dir_fd), which no event names
                path = self.path(name)
                if path and os.path.isdir(path) and self.outside(path):
                    self.log("write", path, f"opened a handle on the folder {path}, which can write inside it")

    def on_change(self, how):
        def handle(args):
            for value in args[:2] if how == "renamed" else args[:1]:
                if not isinstance(value, int):
                    self.written(value, how)
        return handle

    def on_process(self, program_at):
        def handle(args):
            program = args[program_at] if program_at is not None else "fork"
            if isinstance(program, (list, tuple)):
                program = program[0] if program else ""
            if isinstance(program, bytes):
                program = os.fsdecode(program)
            program = str(program)
            name = os.path.basename(program.split()[0]) if program.strip() else program
            self.log("process", name, f"started {program[:200]}")
        return handle

    def on_socket(self, verb):
        def handle(args):
            address = args[1]
            if isinstance(address, tuple) and address:
                host = str(address[0])
                self.log("network", f"{verb} {host}", f"{verb} {host}:{address[1] if len(address) > 1 else ''}")
                return
            if isinstance(address, bytes):
                address = os.fsdecode(address)
            if not isinstance(address, str) or not address:
                return
            if address.startswith("\0"):
                self.log("network", f"{verb} abstract unix socket", f"{verb} the abstract unix socket {address[1:]!r}")
            elif self.outside(self.path(address)):
                self.log("network", f"{verb} unix socket {address}", f"{verb} the unix socket {address}")
        return handle

    def on_lookup(self, args):
        host = args[0]
        if host:
            host = os.fsdecode(host) if isinstance(host, bytes) else str(host)
            self.log("network", f"look up {host}", f"looked up the host name {host}")

    def on_dlopen(self, args):
        name = args[0]
        if name:
            name = os.fsdecode(name) if isinstance(name, bytes) else str(name)
            self.log("native", os.path.basename(name), f"loaded native code from {name}")

    def on_signal(self, args):
        target, sig = args[0], args[1]
        if target != os.getpid():
            self.log("signal", f"signal {sig}", f"sent signal {sig} to process {target}")

    def handlers(self):
        return {
            "open": self.on_open,
            "os.remove": self.on_change("deleted"), "os.rmdir": self.on_change("deleted"),
            "shutil.rmtree": self.on_change("deleted"), "os.rename": self.on_change("renamed"),
            "os.truncate": self.on_change("truncated"), "os.mkdir": self.on_change("created"),
            "os.symlink": lambda args: self.on_change("linked")(args[1:]),
            "os.link": lambda args: self.on_change("linked")(args[1:]),
            "os.chmod": self.on_change("changed the mode of"), "os.chown": self.on_change("changed the owner of"),
            "subprocess.Popen": self.on_process(1), "os.system": self.on_process(0), "os.exec": self.on_process(0),
            "os.posix_spawn": self.on_process(0), "os.spawn": self.on_process(1), "os.fork": self.on_process(None),
            "os.forkpty": self.on_process(None),
            "socket.connect": self.on_socket("connect"), "socket.bind": self.on_socket("bind"),
            "socket.sendto": self.on_socket("send"), "socket.sendmsg": self.on_socket("send"),
            "socket.getaddrinfo": self.on_lookup, "socket.gethostbyname": self.on_lookup,
            "socket.gethostbyaddr": self.on_lookup,
            "ctypes.dlopen": self.on_dlopen,
            "os.kill": self.on_signal, "os.killpg": self.on_signal, "signal.pthread_kill": self.on_signal,
        }


def _watch_secret_lookups(monitor):
    """os.environ with a lookup that notes credential names (looked up by name: copying the environment does not)."""
    base = type(os.environ)

    class WatchedEnviron(base):
        def __getitem__(self, key):
            if isinstance(key, str) and SECRET.search(key):
                monitor.log("secret", key, f"looked up the credential variable {key}")
            return base.__getitem__(self, key)

    os.environ.__class__ = WatchedEnviron


def install(log_path, roots):
    monitor = _Monitor(log_path, roots)
    handlers = monitor.handlers()

    def hook(event, args):
        handler = handlers.get(event)
        if handler is None or getattr(monitor.inside, "handling", False):
            return
        monitor.inside.handling = True
        try:
            handler(args)
        except PermissionError:
            raise
        except Exception:  # a malformed event must never break the code under test
            pass
        finally:
            monitor.inside.handling = False

    _watch_secret_lookups(monitor)
    sys.addaudithook(hook)
