"""Python runs this at start-up in every sandboxed process (its folder leads PYTHONPATH): it installs perfagent's
behaviour monitor, then runs the sitecustomize that this one shadows, if the interpreter has one."""
import importlib.util
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))


def _start_monitor():
    log = os.environ.get("PERFAGENT_BEHAVIOUR_LOG")
    if not log or not hasattr(sys, "addaudithook"):  # audit hooks came with Python 3.8
        return
    spec = importlib.util.spec_from_file_location("_perfagent_monitor", os.path.join(_HERE, "..", "monitor.py"))
    monitor = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(monitor)
    monitor.install(log, os.environ.get("PERFAGENT_WRITABLE", "").split(os.pathsep))


def _run_shadowed():
    others = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
    saved, sys.path[:] = sys.path[:], others
    own = sys.modules.pop("sitecustomize", None)
    try:
        import sitecustomize  # noqa: F401  the interpreter's own, if any
    except ImportError as exc:
        if exc.name != "sitecustomize":
            raise
    finally:
        sys.path[:] = saved
        if own is not None and "sitecustomize" not in sys.modules:
            sys.modules["sitecustomize"] = own


_start_monitor()
_run_shadowed()
