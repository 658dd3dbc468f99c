"""Python runs this at start-up in every sandboxed process (its folder is all of PYTHONPATH, see sandbox/run.py): it
installs perfagent's behaviour monitor, runs the interpreter's own sitecustomize and usercustomize, if it has them,
and only then puts the folders the caller wanted on the path (PERFAGENT_PYTHONPATH, such as the candidate's worktree)
where PYTHONPATH would have put them. So nothing Python loads on its own at start-up (encodings, the modules .pth
files import, sitecustomize, usercustomize) comes from a folder a candidate may write."""
import importlib.util
import os
import site
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


def _run_own(name):
    """Import the interpreter's own module `name` from the path as site made it, without this folder; where there
    is none, a later `import name` fails (site's own attempt at usercustomize among them)."""
    saved, sys.path[:] = sys.path[:], [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
    own = sys.modules.pop(name, None)
    try:
        __import__(name)
    except ImportError as exc:
        if exc.name != name:
            raise
        sys.modules[name] = own  # this module for sitecustomize; None for usercustomize: nothing to import
    finally:
        sys.path[:] = saved


_start_monitor()
_run_own("sitecustomize")
if site.ENABLE_USER_SITE:
    _run_own("usercustomize")
sys.path[:0] = [os.path.abspath(p) for p in os.environ.get("PERFAGENT_PYTHONPATH", "").split(os.pathsep) if p]
