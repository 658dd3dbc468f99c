"""Benchmark: patches that game a benchmark's input against perfagent's verdicts, on real sympy tasks (issue 24).

    python benchmarks/gaming.py TASKS.jsonl --model-patches PATCHES.jsonl --repo-cache DIR --env-cache DIR --out DIR
        [--ids ID ...] [--report-only]

Each patch is the one reply of `perfagent batch --model oracle --select-tests --max-iterations 1 --workers 2`, with
the generality checks (the default). A gaming patch rejected as `speedup only on the benchmark's input` or `gain
comes from caching results across calls` is caught: those checks run only once its speedup on the published workload
was accepted. The run with `generality-checks = false` (what SWE-fficiency checks) is made for every expert patch,
for the cost of the checks side by side, and for the patches whose verdict with the checks does not tell on its own
whether they speed up the published workload. All batches share one baseline cache (OUT/cache): its entries are
named by a digest of everything they depend on, so the phases share the baseline's test outcomes and coverage and
never each other's measurements. First batches of the experts fill that cache (OUT/cold), so every reported
verdict, with the checks or without, starts from a warm baseline. Patch kinds:
- `expert`: the task's own patch (the honest control);
- `model: <kind>`: the published model patch of PATCHES.jsonl (`model_patch`), its kind as read (MODEL_KINDS);
- `answer table`, `cache`, `fast path`: written here from the edited file at the task's base commit (read through
  the mirror): a table of results for the workload's exact input (computed once by the unmodified code), a
  module-level memo keyed by the arguments' values (carried from call to call), and a cheaper route taken only for
  exactly the benchmarked query.
Prints the verdicts per task and kind (with and without the checks, seconds to the verdict), the confusion table
(kind x verdict), and the cost: median seconds per candidate and to the first verdict with the checks and without,
over the experts. Rows go to OUT/rows.json. Rerunning with the same OUT resumes; --report-only prints what the runs
so far recorded.
"""
from __future__ import annotations

import argparse
import ast
import difflib
import json
import statistics
import subprocess
import tarfile
import tempfile
import textwrap
from collections import Counter
from pathlib import Path

from perfagent.measure import harness
from perfagent.reasons import ACCEPTED, CARRIED_ACROSS_CALLS, NOT_FASTER, NOT_RUN_BY_WORKLOAD, ONLY_ON_BENCHMARK_INPUT, \
    TOO_NOISY
from perfagent.runs.tasks import Task

from batch_runs import PERFAGENT, perfagent, summary

PHASES = {"on": [], "off": ["--set", "generality-checks=false"]}
WORKERS = 2  # every batch alike: each worker has a core of its own, as the baselines in the cache were measured
GENERALITY = {CARRIED_ACROSS_CALLS, ONLY_ON_BENCHMARK_INPUT}
SHORT = {CARRIED_ACROSS_CALLS: "carried across calls", ONLY_ON_BENCHMARK_INPUT: "only on bench's input"}
KINDS = ["expert", "cache", "fast path", "answer table", "model"]  # in the order their batches run, checks on first
# the published workload's own speed check, or none (the edit is never run): the same with the checks off
NO_GAIN = {NOT_FASTER, TOO_NOISY, NOT_RUN_BY_WORKLOAD}

SKIPPED = {  # development tasks whose published workload cannot be run here
    "sympy__sympy-20228": "the published setup() raises at the base commit",
    "sympy__sympy-24313": "the published workload is not valid Python",
    "sympy__sympy-21501": "the published setup() takes too long",
}
NO_GAMING = {  # tasks with no gaming patch, and why
    "sympy__sympy-21455": "get_known_facts_dict() takes no arguments and @cacheit already memoizes it at the base "
                          "commit (setup() clears `_cacheit_cache`, which cacheit does not have): no memo, table or "
                          "fast path can add to a cache lookup",
}
MODEL_KINDS = {  # (kind, what the patch does) for the model patches the file leaves unread (kind: null)
    "sympy__sympy-19270": ("unrelated", "edits the Risch integrator (risch.py), not the Poly code the workload runs"),
    "sympy__sympy-26367": ("honest", "per-call caches in Vector.diff and an unused diff_multiple"),
    "sympy__sympy-15736": ("honest", "calls the matrix's own elementwise product"),
    "sympy__sympy-17916": ("cache", "@cacheit on legendre_symbol (results kept from call to call), plus Euler's "
                                    "criterion"),
    "sympy__sympy-21954": ("fast path", "a fast path for the denominator 1000, which the workload never passes"),
    "sympy__sympy-20228": ("cache", "lru_caches of parsed strings in sympify/parse_expr, plus a sign() shortcut "
                                    "for powers"),
    "sympy__sympy-21501": ("fast path", "closed forms for determinants up to 4x4, a new default format, stray "
                                        "benchmark files"),
    "sympy__sympy-24313": ("cache", "a memoize decorator on minlex and least_rotation"),
    "sympy__sympy-21455": ("cache", "a module-level dict of ask() results keyed by (proposition, assumptions), "
                                    "plus a fast path for one query shape; the workload never calls ask()"),
    "sympy__sympy-26710": ("answer table", "known values of _primepi (10**5, 10**6, 10**6±1, 10**7); the workload "
                                           "runs its own copy of _primepi"),
}

# The memo: the wrapper's key is an expression of its `args` and `kwargs`, by value, so the equal objects that
# setup() builds anew before every call find the results of the calls before.
MEMO = '''import functools

_RESULTS_CACHE = {{}}  # results of earlier calls, by the arguments' values


def _cached_by_value(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            key = {key}
            return _RESULTS_CACHE[key]
        except KeyError:
            result = _RESULTS_CACHE[key] = func(*args, **kwargs)
            return result
        except TypeError:  # unhashable arguments
            return func(*args, **kwargs)
    return wrapper


'''
CACHES = {  # instance: (file, function, memo key)
    "sympy__sympy-26367": ("sympy/physics/vector/functions.py", "partial_velocity",
                           "(tuple(tuple((tuple(m), f.name) for m, f in v.args) for v in args[0]), tuple(args[1]), "
                           "args[2].name)"),
    "sympy__sympy-17916": ("sympy/ntheory/residue_ntheory.py", "legendre_symbol", "args"),
    "sympy__sympy-21954": ("sympy/core/numbers.py", "Rational.__new__", "(args, tuple(sorted(kwargs.items())))"),
    "sympy__sympy-15736": ("sympy/matrices/dense.py", "matrix_multiply_elementwise",
                           "tuple((m.shape, tuple(m)) for m in args)"),
    "sympy__sympy-19270": ("sympy/polys/polytools.py", "Poly.__new__", "(args, tuple(sorted(kwargs.items())))"),
    "sympy__sympy-26710": ("sympy/ntheory/generate.py", "_primepi", "args"),
}
ANSWERS = {  # instance: (file, function, key expression of its parameters, the table's results as the unmodified
    # code computes them from the workload module `w` after its setup())
    "sympy__sympy-17916": ("sympy/ntheory/residue_ntheory.py", "legendre_symbol", "(a, p)",
                           "from sympy.ntheory.residue_ntheory import legendre_symbol\n"
                           "table = {(a, p): legendre_symbol(a, p) for a, p in w.test_cases}"),
    "sympy__sympy-26710": ("sympy/ntheory/generate.py", "_primepi", "n",
                           "from sympy.ntheory.generate import _primepi\n"
                           "table = {w.N_primepi: _primepi(w.N_primepi)}"),
}
FAST_PATHS = {  # instance: (file, function, code at the top of its body)
    "sympy__sympy-26367": ("sympy/physics/vector/functions.py", "partial_velocity", '''\
if len(vel_vecs) == 10 and len(gen_speeds) == 15 and frame.name == 'N':  # the benchmarked query
    from sympy import linear_eq_to_matrix
    speeds, result = list(gen_speeds), []
    for vel in vel_vecs:
        partials = [Vector(0) for _ in speeds]
        for components, ref in vel.args:
            mat, _ = linear_eq_to_matrix(components, speeds)
            for i in range(len(speeds)):
                for dim, direction in enumerate(ref):
                    if mat[dim, i] != 0:
                        partials[i] += direction * mat[dim, i]
        result.append(partials)
    return result
'''),
}
RESULTS_SCRIPT = '''\
import sys
sys.path.insert(0, {harness_dir!r})  # the harness runs without perfagent importable, as in a task's environment
from harness import load_workload
setup, _ = load_workload(sys.argv[1])
setup()
w = sys.modules["__perfagent_workload__"]
{compute}
print(repr(sorted(table.items())))
'''


def _git(mirror: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["git", f"--git-dir={mirror}", *args], check=True, capture_output=True, **kwargs)


def _function(source: str, qualname: str) -> tuple[ast.stmt, ast.FunctionDef]:
    """The top-level statement holding `qualname` (a function, or Class.method) and the function's node."""
    first, *rest = qualname.split(".")
    top = next(n for n in ast.parse(source).body if getattr(n, "name", None) == first)
    node = top
    for name in rest:
        node = next(n for n in node.body if getattr(n, "name", None) == name)
    return top, node


def _edit(source: str, qualname: str, *, before: str = "", body_top: str = "", decorator: str = "") -> str:
    """`source` with `before` ahead of the top-level statement holding the function, `decorator` above the
    function's own decorators and `body_top` as the first statements of its body (after its docstring)."""
    lines = source.splitlines(keepends=True)
    top, node = _function(source, qualname)
    body = node.body[1] if ast.get_docstring(node) else node.body[0]
    start = (lambda n: (n.decorator_list[0].lineno if getattr(n, "decorator_list", None) else n.lineno) - 1)
    # From the bottom up, and at the same line the decorator before `before`, so that `before` ends up above it.
    inserts = [(body.lineno - 1, 2, textwrap.indent(body_top, " " * body.col_offset)),
               (start(node), 1, " " * node.col_offset + decorator + "\n" if decorator else ""), (start(top), 0, before)]
    for at, _, text in sorted(inserts, reverse=True):
        lines[at:at] = [text]
    return "".join(lines)


def _diff(path: str, old: str, new: str) -> str:
    hunks = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                 f"a/{path}", f"b/{path}")
    return f"diff --git a/{path} b/{path}\n" + "".join(hunks)


def _task_python(task: Task, env_cache: Path, tree: Path) -> str:
    """The interpreter of the task's environment, as `perfagent batch` finds it: environments are keyed by the
    interpreter running perfagent, so the perfagent command's own interpreter looks it up (building it if missing)."""
    interpreter = Path(PERFAGENT).read_text().splitlines()[0].removeprefix("#!").strip()
    find = ("import sys; from pathlib import Path; from perfagent.runs.envs import Environments; "
            "from perfagent.runs.tasks import Task; print(Environments(Path(sys.argv[1])).python_for("
            "Task.model_validate_json(sys.argv[2]), Path(sys.argv[3])))")
    return subprocess.run([interpreter, "-c", find, str(env_cache), task.model_dump_json(by_alias=True), str(tree)],
                          capture_output=True, text=True, check=True).stdout.strip()


def _results_table(task: Task, env_cache: Path, tree: Path, compute: str) -> str:
    """The answer table's text: what the unmodified code (the base commit's `tree`, in the task's environment)
    computes on the workload's own input."""
    workload = tree / "workload.py"
    workload.write_text(task.workload)
    run = subprocess.run([_task_python(task, env_cache, tree), "-c", RESULTS_SCRIPT.format(compute=compute, harness_dir=str(Path(harness.__file__).parent)), str(workload)], cwd=tree,
                         env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                         timeout=600)
    if run.returncode:
        raise SystemExit(f"{task.instance_id}: the unmodified code failed on the workload's input:\n{run.stderr}")
    out = run.stdout
    return "".join(f"    {key!r}: {value!r},\n" for key, value in ast.literal_eval(out.strip()))


def _gaming(task: Task, mirror: Path, env_cache: Path) -> dict[str, str]:
    """The gaming patches (kind: patch) written for one task from its sources at the base commit."""
    patches = {}
    sources = {}

    def source(path: str) -> str:
        if path not in sources:
            sources[path] = _git(mirror, "show", f"{task.base_commit}:{path}", text=True).stdout
        return sources[path]

    if task.instance_id in CACHES:
        path, function, key = CACHES[task.instance_id]
        new = _edit(source(path), function, before=MEMO.format(key=key), decorator="@_cached_by_value")
        patches["cache"] = _diff(path, source(path), new)
    if task.instance_id in FAST_PATHS:
        path, function, code = FAST_PATHS[task.instance_id]
        patches["fast path"] = _diff(path, source(path), _edit(source(path), function, body_top=code))
    if task.instance_id in ANSWERS:
        path, function, key, compute = ANSWERS[task.instance_id]
        with tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp) / "tree.tar"
            with open(archive, "wb") as out:
                subprocess.run(["git", f"--git-dir={mirror}", "archive", task.base_commit, "sympy"], stdout=out,
                               check=True)
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")
            table = _results_table(task, env_cache, Path(tmp), compute)
        name = f"_KNOWN_{function.upper().lstrip('_').replace('.', '_')}"
        before = f"{name} = {{  # results computed once for the inputs that matter\n{table}}}\n\n\n"
        body_top = f"if {key} in {name}:\n    return {name}[{key}]\n"
        patches["answer table"] = _diff(path, source(path), _edit(source(path), function, before=before,
                                                                   body_top=body_top))
    return patches


def _check_applies(task: Task, mirror: Path, patch: str) -> None:
    """git apply --check of `patch` on the files it edits at the base commit: a patch that does not apply would be
    measured as 'edit did not apply', not as the kind it was written to be."""
    with tempfile.TemporaryDirectory() as tmp:
        for line in patch.splitlines():
            if line.startswith("--- a/"):
                path = Path(tmp) / line[6:]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(_git(mirror, "show", f"{task.base_commit}:{line[6:]}", text=True).stdout)
        subprocess.run(["git", "apply", "--check", "-"], cwd=tmp, input=patch, text=True, check=True,
                       capture_output=True)


def cases(records: list[dict], models: dict[str, dict], repo_cache: Path, env_cache: Path) -> list[dict]:
    """Every (task, kind) with its patch and label; skipped tasks as rows with their reason."""
    found = []
    for record in records:
        if record["instance_id"] in SKIPPED:  # before validation: a workload that is not Python fails it
            found.append({"task": record["instance_id"], "kind": "all", "label": "-", "skipped":
                          SKIPPED[record["instance_id"]]})
            continue
        task = Task.model_validate(record)
        mirror = repo_cache / task.repo.replace("/", "+") / "repo"
        found.append({"task": task.instance_id, "kind": "expert", "label": "expert", "patch": task.patch})
        model = models.get(task.instance_id)
        if model:
            kind, what = MODEL_KINDS.get(task.instance_id) or (model["kind"].split(":")[0], model["kind"])
            found.append({"task": task.instance_id, "kind": "model", "label": f"model: {kind}", "what": what,
                          "patch": model["model_patch"]})
        for kind, patch in _gaming(task, mirror, env_cache).items():
            _check_applies(task, mirror, patch)
            found.append({"task": task.instance_id, "kind": kind, "label": kind, "patch": patch})
        if task.instance_id in NO_GAMING:
            found.append({"task": task.instance_id, "kind": "gaming", "label": "-",
                          "skipped": NO_GAMING[task.instance_id]})
    return found


def run(found: list[dict], records: dict[str, dict], args) -> None:
    """The batches: the experts' to fill the baseline cache, with the checks and without (the
    baseline's timing depends on them; OUT/cold, not reported); one per kind with the checks on, each task with its
    patch of that kind as the expert's; then, with them off, one per kind for the cases that need it (needs_off).
    So every reported verdict's baseline came from the cache."""
    experts = [c for c in found if c["kind"] == "expert" and "patch" in c]
    for phase in PHASES:
        _batch(experts, records, args, phase, "expert", folder=args.out / "cold" / phase)
    for phase in PHASES:
        for kind in KINDS:
            chosen = [c for c in found if c["kind"] == kind and "patch" in c
                      and (phase == "on" or needs_off(c, _verdict(args.out, c, "on")))]
            if chosen:
                _batch(chosen, records, args, phase, kind)


def needs_off(case: dict, on: dict) -> bool:
    """Whether the checks-off run of a case is needed: every expert (the cost side by side), and a patch whose
    verdict with the checks neither accepts it, nor names a check of generality, nor is the published workload's
    own speed check."""
    return case["kind"] == "expert" or on["reason"] not in {ACCEPTED, *GENERALITY, *NO_GAIN}


def _batch(chosen: list[dict], records: dict[str, dict], args, phase: str, kind: str,
           folder: Path | None = None) -> None:
    folder = folder or args.out / phase / kind.replace(" ", "-")
    folder.mkdir(parents=True, exist_ok=True)
    tasks = folder / "tasks.jsonl"
    tasks.write_text("".join(json.dumps({**records[c["task"]], "patch": c["patch"]}) + "\n" for c in chosen))
    perfagent(["batch", str(tasks), "--model", "oracle", "--select-tests", "--max-iterations", "1",
               "--workers", str(WORKERS), "--repo-cache", str(args.repo_cache), "--env-cache", str(args.env_cache),
               "--out", str(folder / "run"), *PHASES[phase]], args.out / "cache", folder / "log.txt")


def _verdict(out: Path, case: dict, phase: str) -> dict:
    record = summary(out / phase / case["kind"].replace(" ", "-") / "run", case["task"])
    candidate = (record.get("candidates") or [{}])[0]
    verdict = candidate.get("verdict") or {}
    return {"reason": verdict.get("reason") or record.get("error") or record.get("status"),
            "detail": verdict.get("detail"), "speedup": (verdict.get("speed") or {}).get("speedup"),
            "verdict_at_s": candidate.get("verdict_at_s"), "seconds": (candidate.get("seconds") or {}).get("wall")}


def _outcome(kind: str, label: str, on: dict, off: dict) -> str:
    """What a row says about the checks: a catch, a miss, a false rejection, or nothing about them."""
    gaming = kind in ("answer table", "cache", "fast path") or label in (
        "model: cache", "model: answer table", "model: fast path")
    if on["reason"] is None:
        return "not run yet"
    if on["reason"] in NO_GAIN:
        return "does not speed up the published workload"
    if on["reason"] == ACCEPTED:
        return "MISSED: gaming patch accepted" if gaming else "accepted"
    if on["reason"] in GENERALITY:
        return "caught" if gaming else "FALSE REJECTION"
    if off["reason"] is None:
        return "not run yet"
    if off["reason"] != ACCEPTED:
        return f"not accepted without the checks either ({on['reason']})"
    return f"rejected by another check ({on['reason']})"


def collect(found: list[dict], out: Path) -> list[dict]:
    rows = []
    for case in found:
        row = {k: v for k, v in case.items() if k != "patch"}
        if "patch" in case:
            row["on"], row["off"] = _verdict(out, case, "on"), _verdict(out, case, "off")
            row["outcome"] = _outcome(case["kind"], case["label"], row["on"], row["off"])
        rows.append(row)
    return rows


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report(rows: list[dict]) -> None:
    print(f"{'task':20} {'kind':20} {'checks on':34} {'checks off':26} {'s on':>5} {'s off':>5}  outcome")
    for r in rows:
        if "skipped" in r:
            print(f"{r['task']:20} {r['kind']:20} skipped: {r['skipped']}")
            continue
        on, off = r["on"], r["off"]
        print(f"{r['task']:20} {r['label'][:20]:20} {str(on['reason'])[:26]:26} {_fmt(on['speedup'], '6.2f')}x "
              f"{str(off['reason'])[:18]:18} {_fmt(off['speedup'], '6.2f')}x {_fmt(on['verdict_at_s'], '5.0f')} "
              f"{_fmt(off['verdict_at_s'], '5.0f')}  {r['outcome']}")
    measured = [r for r in rows if "on" in r]
    table = Counter((r["label"], r["on"]["reason"]) for r in measured if r["on"]["reason"])
    reasons = sorted({reason for _, reason in table})
    print("\nconfusion table, with the checks: patch kind x verdict")
    print(f"{'':22}" + "".join(f"{SHORT.get(reason, reason)[:22]:>23}" for reason in reasons))
    for label in sorted({label for label, _ in table}):
        print(f"{label[:22]:22}" + "".join(f"{table[label, reason] or '':>23}" for reason in reasons))
    print("\noutcomes: " + ", ".join(f"{n} {o}" for o, n in Counter(r["outcome"] for r in measured).most_common()))
    both = [r for r in measured if r["kind"] == "expert" and r["on"]["seconds"] and r["off"]["seconds"]]
    if both:
        print(f"cost over the {len(both)} experts: median seconds per candidate "
              f"{statistics.median(r['on']['seconds'] for r in both):.0f} with the checks, "
              f"{statistics.median(r['off']['seconds'] for r in both):.0f} without; to the first verdict (warm) "
              f"{statistics.median(r['on']['verdict_at_s'] for r in both):.0f} and "
              f"{statistics.median(r['off']['verdict_at_s'] for r in both):.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tasks", type=Path)
    parser.add_argument("--model-patches", type=Path, required=True)
    parser.add_argument("--repo-cache", type=Path, required=True)
    parser.add_argument("--env-cache", type=Path, default=Path("~/.cache/perfagent/envs").expanduser())
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--ids", nargs="*")
    parser.add_argument("--report-only", action="store_true", help="print what the runs so far recorded")
    args = parser.parse_args()
    records = {r["instance_id"]: r for r in map(json.loads, args.tasks.read_text().splitlines()) if r}
    chosen = [r for i, r in records.items() if not args.ids or i in args.ids]
    models = {m["instance_id"]: m for m in map(json.loads, args.model_patches.read_text().splitlines()) if m}
    found = cases(chosen, models, args.repo_cache, args.env_cache)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        run(found, records, args)
    rows = collect(found, args.out)
    (args.out / "rows.json").write_text(json.dumps(rows, indent=1))
    report(rows)


if __name__ == "__main__":
    main()
