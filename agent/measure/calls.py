"""Hold a candidate's recorded calls to the unmodified code's (the records come from the child's recorder.py).

For each function recorded in both runs, a candidate's call whose arguments digest equal to a call of the unmodified
code must give the result that call gave (compare_results, float tolerance included); if the unmodified code's
calls with those arguments gave several results (a function that reads state its arguments do not show), any of
them will do. Calls the candidate no longer makes, or makes with other arguments, are not compared: a faster candidate
may call a function less often or differently. A generator is held to what it yielded; where either run left it
before its end, to the yields both runs saw.
The records are parsed JSON from an untrusted child: anything malformed compares unequal, never raises.
"""
from __future__ import annotations

from dataclasses import dataclass

from perfagent.measure.compare import ROOT, Comparison, compare_results, render

_ENDS = ("returned", "raised")
_WHOLE = {ROOT, *(f"{ROOT}.{field}" for field in (*_ENDS, "yielded", "digest"))}  # differences of a whole result


@dataclass(frozen=True)
class CallComparison(Comparison):
    calls: int = 0  # the candidate's calls held to a call of the unmodified code
    functions: int = 0  # functions those calls belong to

    def summary(self) -> str:
        calls, functions = (f"{n} {word}{'' if n == 1 else 's'}" for n, word in
                            ((self.calls, "call"), (self.functions, "function")))
        return f"compared {calls} of {functions}"


def compare_calls(expected: dict, actual: dict) -> CallComparison:
    """The unmodified code's records (`expected`) against a candidate's (`actual`)."""
    try:
        return _compare(expected, actual)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
        return CallComparison(False, f"malformed call records ({type(exc).__name__}: {exc})")


def _compare(expected: dict, actual: dict) -> CallComparison:
    if actual["_unhooked"] and not expected["_unhooked"]:
        return CallComparison(False, "the code removed the call recorder's hook (sys.settrace)")
    calls = functions = 0
    for target in sorted(name for name in expected if ":" in name):
        results = {}
        for call in expected[target]:
            results.setdefault(call["args"], []).append(call["result"])
        compared = 0
        for call in actual.get(target, []):
            if call["args"] in results:
                compared += 1
                detail = _difference(results[call["args"]], call["result"])
                if detail:
                    return CallComparison(False, f"{_shown(target, call)} {detail}", calls + compared, functions + 1)
        calls, functions = calls + compared, functions + bool(compared)
    return CallComparison(True, "", calls, functions)


def _difference(results: list, result: dict) -> str | None:
    """None if `result` matches one of the unmodified code's `results` for the same arguments, else what differs
    from the first of them."""
    details = [_compared(expected, result) for expected in results]
    if None in details:
        return None
    verb, text = _outcome(result)
    base_verb, base_text = _outcome(results[0])
    said = f"{verb} {text}, the unmodified code {base_text if base_verb == verb else f'{base_verb} {base_text}'}"
    nested = details[0].partition(":")[0] not in _WHOLE
    return f"{said} (first difference at {details[0]})" if nested else said


def _ended(result: dict) -> bool:
    return any(end in result for end in _ENDS)


def _compared(expected: dict, actual: dict) -> str | None:
    """compare_results' detail, or None if they match; a generator that either run left before its end is held to
    the yields both saw."""
    if "yielded" in expected and "yielded" in actual and not (_ended(expected) and _ended(actual)):
        seen = min(len(expected["yielded"]), len(actual["yielded"]))
        expected, actual = {"yielded": expected["yielded"][:seen]}, {"yielded": actual["yielded"][:seen]}
    comparison = compare_results(expected, actual)
    return None if comparison.equal else comparison.detail


def _outcome(result: dict) -> tuple[str, str]:
    """How a call ended, as a verb and what followed it."""
    if "digest" in result:
        return "returned", f"a large result (sha256 {str(result['digest'])[:12]}...)"
    end = next((kind for kind in _ENDS if kind in result), None)
    if "yielded" not in result:
        return end, render(result[end])
    tail = f" then {end} {render(result[end])}" if end else " (not run to its end)"
    return "yielded", f"{render(result['yielded'])}{tail}"


def _shown(target: str, call: dict) -> str:
    """The call as `module:function(arguments)`, the arguments by their digest when they were too long to keep."""
    if "argv" in call:
        return f"{target}({', '.join(render(arg, 40) for arg in call['argv'])})"
    return f"{target}(<args {str(call['args'])[:8]}...>)"
