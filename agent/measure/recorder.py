"""Record the calls a workload makes to chosen functions, their arguments and what they returned, so that the parent
can hold a candidate's calls to the unmodified code's (agent/measure/calls.py).

Why: most real workloads discard their result (`_ = f(x)`; workload() returns None), so comparing workload()'s
result checks nothing; the functions that do the work are where a wrong result shows. Each run records the same
functions (the profile's hot ones and those a candidate edits) on the same input; calls with equal arguments must
give equal results.

Child side: runs in the target's own interpreter, loaded by path like normal_form.py, stdlib only, never importing
perfagent. Use:

    recorder = Recorder(normal_form)       # normal_form: the loaded normal_form.py module
    recorder.start(["pkg.mod:f", "pkg.mod:Class.method", "pkg.mod:outer.<locals>.inner"])
    setup(); workload()
    recorder.stop()
    output["calls"] = recorder.records()   # JSON-able

A target is a `module:qualname` key (FunctionSpan.key: the module is the file's path with dots, so `src.pkg.mod` and
`pkg.__init__` are found too). start() imports its module, walks the qualname through class namespaces and the
wrappers decorators leave, and into nested functions' code, to the code objects that are its body (or, if the name
is bound to a function defined under another name, `f = _fast_f`, to that function's); a target not found is listed
under "_missing". A call is a frame running one of those code objects, whoever calls it (C code included,
e.g. sorted(key=f)); a call's own nested calls are calls too (recursion). Per call:
- "args": sha256 of the normal forms of the parameters and closure variables as the frame received them, taken at
  the call, before the body can change them; positional, so a renamed parameter still matches. "argv": those normal
  forms themselves when they are short, for the parent to show the call.
- "result": {"returned": normal form} at the return; {"raised": the exception's class} when the call raised (its
  message is left out: it is wording, not a result). A generator's result is what it gave its consumer:
  {"yielded": [normal forms...]} plus "returned"/"raised" once it finished; without them it was not run to its end
  (its consumer stopped, or recording did), and the parent compares the yields both runs saw. A coroutine or async
  generator records only how it finished: what it passes up at an await is the event loop's business.
  A result whose JSON is longer than `max_bytes` is kept as {"digest": sha256} (compared exactly).

Bounds, so that recording costs little and the same on every run: the first `max_calls` calls of each target are
examined (and `max_calls` yields of a generator); a call whose arguments or result have more than MAX_NODES values
(normal-form nodes, an array counting its elements) is skipped and counted in "_skipped", and a target skipped
MAX_SKIPS times for its arguments is given up; once MAX_TOTAL_NODES have been normalised, or every target's calls
are examined and none is running, the hook is removed.

The hook is sys.settrace (threading.settrace for threads started later): its global function runs only at Python
calls, fewer events than sys.setprofile (which also fires for every C call and every return), and it sees which
exception a frame raised. The code under test can remove it; stop() notices and records "_unhooked": true.
Cost (benchmarks/recorder_cost.py, Python 3.11): none once the hook is gone (1e5 target calls among 1e6 others:
1.0x); while it stays, every Python call pays for the interpreter's trace machinery, about 2.5x on library code
(difflib) and 5-8x on a loop of tiny calls. sys.monitoring (3.12+) would let only the targets' code pay.
"""
import dis
import functools
import hashlib
import importlib
import json
import sys
import threading
import types

MAX_CALLS = 100            # calls examined per target (and yields kept per generator call)
MAX_BYTES = 16_384         # longest result JSON kept whole
MAX_NODES = 20_000         # most normal-form nodes in one call's arguments or result: the function that does the
# work is often handed the whole input (15,000 strings, a list of expressions), and it matters most
MAX_TOTAL_NODES = 500_000  # most nodes normalised in one run (normal_form.py takes about 3 us a node: 1.5 s)
MAX_SKIPS = 3              # a target skipped this often for its size is given up: its next calls would be too

_settrace, _gettrace = sys.settrace, sys.gettrace  # bound before the workload's code can replace them
_thread_settrace = threading.settrace
_GENERATOR, _SUSPENDS = 0x20, 0x20 | 0x80 | 0x100 | 0x200  # CO_GENERATOR; it, coroutines and async generators
_RETURNS = {dis.opmap[name] for name in ("RETURN_VALUE", "RETURN_CONST") if name in dis.opmap}
_YIELD = dis.opmap["YIELD_VALUE"]
_RESUME = dis.opmap.get("RESUME")  # 3.11+: RESUME 0 starts a function, RESUME 1-3 resumes it
_UNBOUND = {"unbound": True}  # stands for a closure variable not assigned yet
_CLASS_DICT = type.__dict__["__dict__"].__get__  # a class's namespace, past any metaclass that redefines __dict__
_MODULE_DICT = types.ModuleType.__dict__["__dict__"].__get__
_ARGV_BYTES = 200          # argument normal forms this short go along to be shown
_WRAPPERS = (  # what decorators' results keep of the function they decorate, besides functools.wraps' __wrapped__
    ((staticmethod, classmethod, types.MethodType), ("__func__",)),
    (property, ("fget", "fset", "fdel")),
    ((functools.partial, functools.partialmethod, functools.cached_property), ("func",)),
)


class _Unrecordable(Exception):
    """A value too large to record, or one whose normal form could not be taken."""


def _named(code, qualname):
    """Whether `code` is the body of `qualname` (3.10's code objects know only the last name)."""
    own = getattr(code, "co_qualname", None)
    return own == qualname if own is not None else code.co_name == qualname.rpartition(".")[2]


def _module(dotted):
    """The module a key's dotted file path names: the path itself, or (for a source folder such as `src`) a tail of
    it whose file is that path; one the workload imported first (a file imported under a second name would run
    twice), else the longest tail that imports; None if there is none."""
    path = "/" + dotted.replace(".", "/") + ".py"
    parts = dotted[: -len(".__init__")].split(".") if dotted.endswith(".__init__") else dotted.split(".")
    names = [".".join(parts[start:]) for start in range(len(parts))]

    def is_file(module):
        file = getattr(module, "__file__", None)
        return isinstance(file, str) and file.replace("\\", "/").endswith(path)

    for name in names:
        if is_file(sys.modules.get(name)):
            return sys.modules[name]
    for name in names:
        try:
            module = importlib.import_module(name)
        except Exception:  # not importable under this name, or its import fails
            continue
        if is_file(module):
            return module
    return None


def _namespace(obj):
    if isinstance(obj, type):
        return _CLASS_DICT(obj)
    return _MODULE_DICT(obj) if isinstance(obj, types.ModuleType) else {}


def _wrapped(obj):
    """What a decorator's result holds of the function it decorates."""
    found = [getattr(obj, name) for kind, names in _WRAPPERS for name in names if isinstance(obj, kind)]
    try:
        found.append(obj.__dict__.get("__wrapped__"))  # functools.wraps, lru_cache
    except Exception:  # no __dict__, or one that is not a mapping
        pass
    if isinstance(obj, types.FunctionType):  # a wrapper made without functools.wraps holds it in a cell
        for cell in obj.__closure__ or ():
            try:
                found.append(cell.cell_contents)
            except ValueError:  # an empty cell
                pass
    return [value for value in found if value is not None and value is not obj]


def _bodies(obj, qualname, depth=0):
    """The code objects of `qualname` (of any function if None) that `obj` is or wraps (through at most 4
    decorators)."""
    if isinstance(obj, types.FunctionType) and (qualname is None or _named(obj.__code__, qualname)):
        return {obj.__code__}
    if depth == 4:
        return set()
    return set().union(*(_bodies(value, qualname, depth + 1) for value in _wrapped(obj)))


def _nested(code, qualname):
    """Code objects named `qualname` among those `code` defines, at any depth (nested functions, class bodies)."""
    found = set()
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            found |= {const} if _named(const, qualname) else _nested(const, qualname)
    return found


def resolve(target):
    """The code objects a `module:qualname` key names (several if its body is defined in more than one place)."""
    dotted, _, qualname = target.partition(":")
    module = _module(dotted)
    if module is None or not qualname:
        return set()
    outer = qualname.partition(".<locals>.")[0]
    obj, names = module, outer.split(".")
    for name in names[:-1]:
        obj = _namespace(obj).get(name)
    found = _namespace(obj).get(names[-1])
    codes = _bodies(found, outer) or _bodies(found, None)  # the name may be bound to a function defined as another
    if outer != qualname:
        codes = set().union(*(_nested(code, qualname) for code in codes))
    return codes


def _arguments(frame):
    """The values a call received: its parameters in order, then its closure variables."""
    code, values = frame.f_code, frame.f_locals
    count = code.co_argcount + code.co_kwonlyargcount + bool(code.co_flags & 0x04) + bool(code.co_flags & 0x08)
    return [values.get(name, _UNBOUND) for name in code.co_varnames[:count] + code.co_freevars]


def _starting(frame):
    """Whether a suspending frame's call event starts it, rather than resuming it after a yield, an await or a
    throw()."""
    lasti, code = frame.f_lasti, frame.f_code.co_code
    if _RESUME is None:
        return lasti < 0
    return code[lasti] == _RESUME and code[lasti + 1] & 3 == 0


class _Call:
    """One recorded call while it runs or is suspended."""

    __slots__ = ("record", "target", "yields", "exception", "raised_at")

    def __init__(self, record, target, code):
        self.record, self.target = record, target
        self.yields = [] if code.co_flags & _GENERATOR else None
        self.exception = None  # the last exception raised in or through the frame since it was (re)entered
        self.raised_at = None  # and the instruction it was at


class Recorder:
    """The calls of chosen functions between start() and stop(); records() is what the parent compares."""

    def __init__(self, normal_form, max_calls=MAX_CALLS, max_bytes=MAX_BYTES):
        self.max_calls, self.max_bytes = max_calls, max_bytes
        self.normalizer = _bounded_normalizer(normal_form)
        self.codes = {}       # id of a target's code object -> the target (hashing a code object hashes its body)
        self.bodies = []      # those code objects, kept alive so that their ids stay theirs
        self.calls = {}       # target -> its records, in the order the calls started
        self.examined = {}    # target -> calls examined so far
        self.skipped = {}     # target -> calls left out: too large, or not normalisable
        self.missing = []
        self.running = {}     # frame -> _Call, from its call (or resumption) to its return (or yield)
        self.suspended = {}   # generator frame -> _Call, between a yield and its resumption
        self.nodes_left = MAX_TOTAL_NODES
        self.installed = self.unhooked = False
        self.hook = None

    def start(self, targets):
        """Find the targets' code objects and follow their calls from now on."""
        for target in targets:
            codes = resolve(target)
            if not codes:
                self.missing.append(target)
            self.calls[target], self.examined[target], self.skipped[target] = [], 0, 0
            self.codes.update(dict.fromkeys(map(id, codes), target))
            self.bodies += codes
        if not self._done():
            self._install()

    def stop(self):
        """Stop following calls; a generator not run to its end keeps what it yielded, other unfinished calls go."""
        if self.installed:
            self.unhooked = _gettrace() is not self.hook
            self._uninstall()
        for call in [*self.running.values(), *self.suspended.values()]:
            self._finish(call, None)
        self.running.clear()
        self.suspended.clear()

    def records(self):
        """{target: [{"args", "argv"?, "result"}...], "_missing": [targets], "_skipped": {target: calls},
        "_unhooked": bool}"""
        return {**self.calls, "_missing": self.missing, "_skipped": {t: n for t, n in self.skipped.items() if n},
                "_unhooked": self.unhooked}

    def _install(self):
        codes, enter, local = self.codes, self._enter, self._local

        def hook(frame, event, arg):  # every Python call goes through here: keep it short
            target = codes.get(id(frame.f_code))
            return local if target is not None and enter(frame, target) else None

        self.hook, self.installed = hook, True
        _thread_settrace(hook)
        _settrace(hook)

    def _uninstall(self):
        self.installed = False
        _thread_settrace(None)
        _settrace(None)

    def _done(self):
        """Whether the hook can go: the node allowance is spent, or every target's calls and none is running."""
        if self.nodes_left <= 0:
            return True
        return not self.running and all(self.examined[target] >= self.max_calls for target in self.codes.values())

    def _enter(self, frame, target):
        """A call of `target` starts or resumes: whether to follow it to its return or yield."""
        if not self.installed:
            _settrace(None)  # a thread that was running when the hook was removed
            return False
        if frame.f_code.co_flags & _SUSPENDS and not _starting(frame):
            call = self.suspended.pop(frame, None)
            if call is None:
                return False
            call.exception = call.raised_at = None
        else:
            if self.examined[target] >= self.max_calls:
                return False
            call = self._start_call(frame, target)
            if call is None:
                if self._done():
                    self._uninstall()
                return False
        self.running[frame] = call
        frame.f_trace_lines = False
        return True

    def _start_call(self, frame, target):
        """A record for a new call of `target`, or None if its arguments are unrecordable."""
        self.examined[target] += 1
        try:
            args = self._normalize(_arguments(frame))
        except _Unrecordable:
            self.skipped[target] += 1
            if self.skipped[target] == MAX_SKIPS:
                self.examined[target] = self.max_calls
            return None
        text = json.dumps(args, sort_keys=True)
        record = {"args": hashlib.sha256(text.encode()).hexdigest()}
        if len(text) <= _ARGV_BYTES:
            record["argv"] = args
        self.calls[target].append(record)
        return _Call(record, target, frame.f_code)

    def _local(self, frame, event, arg):
        call = self.running.get(frame)
        if call is None:  # a generator no longer followed
            frame.f_trace = None
        elif event == "exception":
            call.exception, call.raised_at = arg[1], frame.f_lasti
        elif event == "return":
            del self.running[frame]
            self._leave(frame, call, arg)
        return None if call is None else self._local

    def _leave(self, frame, call, value):
        """A followed frame returns, yields or raises: the instruction it left at tells (an exception thrown in
        at a yield leaves there too, with None, right after the exception event)."""
        op = frame.f_code.co_code[frame.f_lasti]
        raised = op not in _RETURNS and (op != _YIELD or call.raised_at == frame.f_lasti and value is None)
        if op == _YIELD and not raised:
            if call.yields is None or self._yielded(call, value):
                self.suspended[frame] = call
                return
            frame.f_trace = None  # no longer followed: too many yields, or one too large
        elif not raised:
            self._finish(call, ("returned", value))
        elif isinstance(call.exception, GeneratorExit):
            self._finish(call, None)  # closed by its consumer before its end
        else:
            self._finish(call, ("raised", type(call.exception) if call.exception is not None else None))
        if self._done():
            self._uninstall()

    def _yielded(self, call, value):
        """Keep a generator's yield (as it is now: the consumer may change it); whether to follow it further."""
        try:
            call.yields.append(self._normalize([value])[0])
        except _Unrecordable:
            self._drop(call)
            return False
        if len(call.yields) < self.max_calls:
            return True
        self._finish(call, None)  # enough yields: compared as a generator not run to its end
        return False

    def _finish(self, call, end):
        """Fill in a call's result: how it ended, (kind, value), or None if it did not; and what it yielded."""
        if end is None and call.yields is None:
            self._drop(call, skipped=False)  # an unfinished call has no result
            return
        try:
            result = {} if end is None else {end[0]: self._normalize([end[1]])[0]}
        except _Unrecordable:
            self._drop(call)
            return
        if call.yields is not None:
            result["yielded"] = call.yields
        text = json.dumps(result, sort_keys=True)
        call.record["result"] = result if len(text) <= self.max_bytes else \
            {"digest": hashlib.sha256(text.encode()).hexdigest()}

    def _drop(self, call, skipped=True):
        records = self.calls[call.target]
        records[:] = [record for record in records if record is not call.record]
        self.skipped[call.target] += skipped

    def _normalize(self, values):
        """The normal forms of `values`, within MAX_NODES and what is left of MAX_TOTAL_NODES."""
        normalizer = self.normalizer(min(MAX_NODES, self.nodes_left))
        try:
            return [normalizer.visit(value) for value in values]
        except Exception as exc:  # the values' own code (a Mapping's iteration) may raise anything
            raise _Unrecordable from exc
        finally:
            self.nodes_left -= normalizer.used


def _bounded_normalizer(normal_form):
    """normal_form's normalizer, counting the nodes it makes (an array's elements too) and stopping past its
    allowance."""
    array = None

    class Bounded(normal_form._Normalizer):
        def __init__(self, allowance):
            super().__init__()
            self.allowance, self.used = allowance, 0

        def visit(self, obj):
            nonlocal array
            if array is None and "numpy" in sys.modules:
                array = sys.modules["numpy"].ndarray
            self.used += 1 + (obj.size if array is not None and issubclass(type(obj), array) else 0)
            if self.used > self.allowance:
                raise _Unrecordable
            return super().visit(obj)

    return Bounded
