"""Child side of behaviour judging: an audit hook (PEP 578) that logs what the code does that a user would not want.

Loaded at start-up of every Python process in the sandbox (sandbox/startup/sitecustomize.py), in the target's own
interpreter, so it uses the stdlib only. Audit hooks see the call before the operating system is asked, whatever names
the code used to reach it, and also when the sandbox then makes the call fail. Logged, once each, as JSON lines:

- "write": opening for writing, creating, renaming or deleting a path outside the allowed roots, or opening a handle
  on a folder outside them (os.open with dir_fd writes by a name the "open" event does not resolve);
- "process": starting a program (subprocess, os.system, exec, spawn, fork);
- "network": connecting, binding or sending to an address, or looking up a host name;
- "native": loading a shared library with ctypes, or the program's own symbols (CDLL(None): libc's system() among them);
- "signal": signalling another process;
- "secret": looking up a credential variable (they are never set in the sandbox), or reading a credential file.

The parent (sandbox/behaviour.py) compares a candidate's log with the unmodified code's. A hook is not a security
boundary, and the sandbox levels stay the enforcement; the hook refuses only to let the code touch its own log.

Code in the same process can always blind the hook (find it with gc, change its state, close its log), and a hook
that logs nothing proves nothing. So the first Python process of a run (the one that finds REPORT_EXIT set) reports
at its exit, from an atexit handler registered before any of the code runs (so it runs last): when its state is the
state it was installed with, it makes an audited call that always fails, opening /proc/perfagent-monitor-PID/intact
for writing (procfs creates nothing), which an intact hook logs like any other write. The parent requires that line from
a process that exited normally and reports its absence as tampering. It cannot catch blinding undone before exit, or
a forged line: it makes a blinded monitor's silence visible, not the monitor tamper-proof. The hook holds its own
references to the functions it calls, so replacing os.write or os.open does not blind it, and no handler calls
anything that raises an event it handles, so it needs no re-entrancy flag that code could set.
"""
import atexit
import json
import os
import re
import sys

# names whose values perfagent keeps out of every sandboxed environment (sandbox/run.py imports this)
SECRET = re.compile(r"(_API_KEY|_TOKEN|_SECRET|_PASSWORD|^AWS_|^AZURE_|^GOOGLE_APPLICATION_CREDENTIALS$)", re.I)
# credentials under the home folder that sandboxed code has no business reading (sandbox/isolation.py hides them)
CREDENTIAL_FILES = (".ssh", ".aws", ".azure", ".config/gcloud", ".kube", ".docker", ".gnupg", ".netrc",
                    ".git-credentials", ".pypirc", ".npmrc", ".config/gh", ".local/share/keyrings")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_HARMLESS_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/shm/", "/dev/tty")
_MAX_LINES = 200
REPORT_EXIT = "PERFAGENT_REPORT_EXIT"  # set by sandbox/run.py; the first Python process takes it out of os.environ
START = "start"  # the kind of the line that announces an exit report: its subject is the folder the report writes
_write, _open, _getpid = os.write, os.open, os.getpid  # the monitor's own: code that replaces os.write blinds nothing


class _Monitor:
    def __init__(self, log_path, roots):
        self.log_path = os.path.realpath(log_path)
        self.log_name = os.path.basename(self.log_path)
        self.roots = tuple(os.path.join(os.path.realpath(r), "") for r in roots if r)
        home = os.path.expanduser("~")
        self.credentials = tuple(os.path.join(home, name) for name in CREDENTIAL_FILES)
        self.fd = _open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.seen = set()
        self.lines = 0  # len(seen), unless code added to seen to silence an event
        self.exit_report = None  # the folder of this process's exit report, when it makes one

    def log(self, kind, subject, detail):
        key = (kind, subject)
        if key in self.seen or (len(self.seen) >= _MAX_LINES and subject != self.exit_report):
            return
        self.seen.add(key)
        self.lines += 1
        line = json.dumps({"kind": kind, "subject": subject, "detail": detail}) + "\n"
        try:
            _write(self.fd, line.encode("utf-8", "replace"))
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
        if name is None:  # ctypes.CDLL(None), and importing ctypes (its pythonapi): every C function linked in
            self.log("native", "(the program itself)", "loaded the program's own C functions (ctypes.CDLL(None)), "
                     "which reach system() and every other function of the C library")
        elif name:
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


def _report_exit(monitor, handlers):
    """Announce this process, and at its exit, if nothing changed the monitor, make the call that proves the hook
    still logs (see the module's text)."""
    pid = _getpid()
    monitor.exit_report = f"/proc/perfagent-monitor-{pid}"
    monitor.log(START, monitor.exit_report, "")

    def state():
        return tuple(handlers.items()), monitor.roots, monitor.log_path, monitor.fd, id(monitor.seen), type(os.environ)

    installed = state()

    def at_exit():
        if _getpid() == pid and state() == installed and len(monitor.seen) == monitor.lines:  # not a forked child
            try:
                _open(monitor.exit_report + "/intact", os.O_WRONLY | os.O_CREAT)
            except OSError:
                pass

    atexit.register(at_exit)


def install(log_path, roots):
    monitor = _Monitor(log_path, roots)
    handlers = monitor.handlers()

    def hook(event, args):
        handler = handlers.get(event)
        if handler is None:
            return
        try:
            handler(args)
        except PermissionError:
            raise
        except Exception:  # a malformed event must never break the code under test
            pass

    _watch_secret_lookups(monitor)
    sys.addaudithook(hook)
    if os.environ.pop(REPORT_EXIT, None):
        _report_exit(monitor, handlers)
