"""The terminal reviewer of `perfagent optimize --interactive`: line-oriented prompts (rich), so it works in an 80x24
terminal over plain SSH. A person picks the hotspots, reads each candidate (explanation and highlighted diff), accepts
it for validation, edits it in $EDITOR first, or rejects it with feedback for the model; between candidates they undo
the last commit, change the limits or quit. An accepted candidate is still validated like any other."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.markup import escape
from rich.prompt import IntPrompt, Prompt
from rich.rule import Rule
from rich.syntax import Syntax
from rich.table import Table

from perfagent.events import CheckDone, Event, VerdictReached
from perfagent.localize.hotspots import Hotspot
from perfagent.loop.review import ACCEPT, CONTINUE, EDIT, LIMITS, REJECT, UNDO, Candidate, Decision, RunState, Step, \
    unified_diff
from perfagent.loop.stops import Quit
from perfagent.loop.titles import prose_lines
from perfagent.reasons import ACCEPTED, outcome
from perfagent import formats

_EXPLANATION_LINES = 8
_HOTSPOT_ROWS = 10


def prose(reply: str) -> str:
    """The model's explanation: its reply without edit blocks, code fences, diffs and the file names above them."""
    lines = prose_lines(reply)
    if len(lines) > _EXPLANATION_LINES:
        lines = lines[:_EXPLANATION_LINES - 1] + [f"(... {len(lines) - _EXPLANATION_LINES + 1} more lines)"]
    return "\n".join(lines) or "(no explanation)"


def edit_in_editor(files: dict[str, str], folder: Path, editor: str) -> dict[str, str]:
    """Write `files` under `folder`, open them in `editor` (a shell-style command) on this terminal, and return
    their text afterwards. Raises RuntimeError when the editor cannot be started or fails."""
    paths = []
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    command = [*shlex.split(editor), *map(str, paths)]
    try:
        status = subprocess.run(command, cwd=folder).returncode
    except OSError as exc:
        raise RuntimeError(f"cannot start the editor {editor!r} ({exc}): set EDITOR to your editor") from None
    if status != 0:
        raise RuntimeError(f"the editor {editor!r} exited with status {status}; the candidate is unchanged")
    return {name: (folder / name).read_text(encoding="utf-8") for name in files}


class _Answers:
    """A stream of answers read like the terminal's: a line without its newline, EOFError when none are left."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def readline(self) -> str:
        line = self.stream.readline()
        if not line:
            raise EOFError
        return line.rstrip("\n")


class TerminalReviewer:
    """A person at a terminal. `stream` is where answers are read (default: the terminal, with line editing)."""
    human = True

    def __init__(self, console: Console, stream: TextIO | None = None, editor: str | None = None):
        self.console, self.stream = console, _Answers(stream) if stream else None
        self.editor = editor or os.environ.get("EDITOR") or "vi"
        self._status = None  # the spinner while a candidate is validated

    def _ask(self, prompt: str, kind=Prompt, **options):
        try:
            return kind.ask(escape(prompt), console=self.console, stream=self.stream, **options)
        except EOFError:  # the input is gone: stop as if asked to
            raise Quit() from None

    def _choice(self, prompt: str, choices: list[str], default: str | None = None) -> str:
        answer = self._ask(prompt, choices=choices, show_choices=False,
                           **({} if default is None else {"default": default}))
        if answer == "q":
            raise Quit()
        return answer

    # -- hotspots -------------------------------------------------------------------------------------------------
    def choose_targets(self, hotspots: list[Hotspot]) -> list[Hotspot] | None:
        shown = hotspots[:_HOTSPOT_ROWS]
        table = Table(title="where the time goes", title_justify="left", expand=False, pad_edge=False)
        table.add_column("#", justify="right")
        table.add_column("function", overflow="fold", max_width=30)
        table.add_column("file:lines", overflow="fold", max_width=24)
        table.add_column("self", justify="right")
        table.add_column("cum", justify="right")
        for i, h in enumerate(shown, 1):
            table.add_row(str(i), escape(h.qualname), escape(f"{h.file}:{h.start}-{h.end}"), f"{h.self_share:.0%}",
                          f"{h.cum_share:.0%}")
        self.console.print(table)
        while True:
            answer = self._ask("hotspots to work on, e.g. 1,3 (Enter: the agent's choice, q: quit)", default="",
                               show_default=False).strip()
            if answer == "q":
                raise Quit()
            if not answer:
                return None
            try:
                picks = [int(part) for part in re.split(r"[\s,]+", answer)]
            except ValueError:
                picks = []
            if picks and all(1 <= p <= len(shown) for p in picks):
                return [shown[p - 1] for p in dict.fromkeys(picks)]
            self.console.print(f"[red]give numbers from 1 to {len(shown)}, separated by commas[/]")

    # -- one candidate --------------------------------------------------------------------------------------------
    def _show_diff(self, diff: str) -> None:
        self.console.print(Syntax(diff.rstrip("\n"), "diff", theme="ansi_dark", word_wrap=True,
                                  background_color="default"))

    def review(self, candidate: Candidate) -> Decision:
        self.console.print(Rule(escape(f"candidate {candidate.n}: {candidate.summary}"), align="left"))
        self.console.print(escape(prose(candidate.reply)), style="italic")
        self._show_diff(candidate.diff)
        while True:
            action = self._choice("[a]ccept (validate), [e]dit, [r]eject, [q]uit", ["a", "e", "r", "q"])
            if action == "a":
                return Decision(ACCEPT)
            if action == "r":
                return Decision(REJECT, self._ask("feedback for the model (Enter: none)", default="",
                                                  show_default=False).strip())
            try:
                edited = edit_in_editor(candidate.changed, candidate.workdir, self.editor)
            except RuntimeError as exc:
                self.console.print(f"[red]{escape(str(exc))}[/]")
                continue
            changed = {p: text for p, text in edited.items() if text != candidate.before.get(p, "")}
            if not changed:
                self.console.print("the edit undoes the whole change: rejected")
                return Decision(REJECT, "the reviewer's edit undid the whole change")
            if changed == candidate.changed:
                self.console.print("nothing was changed in the editor")
                continue
            self.console.print(Rule("your edited version", align="left"))
            self._show_diff(unified_diff(candidate.before, changed))
            return Decision(EDIT, changed=changed)

    @contextmanager
    def validating(self, n: int, tests: list[str]):
        """A spinner while candidate n is validated; each check's outcome is printed as it is measured (observe)."""
        what = ", ".join(tests) if tests else "none selected"
        with self.console.status(escape(f"candidate {n}: running the tests ({what})...")) as self._status:
            try:
                yield
            finally:
                self._status = None

    def observe(self, event: Event) -> None:
        if isinstance(event, CheckDone):
            self.console.print(f"  {escape(event.step)}")
            if self._status is not None:
                self._status.update(escape(f"candidate {event.n}: " + (
                    "timing..." if event.step.startswith(("result", "timing")) else "checking the result...")))
        elif isinstance(event, VerdictReached):
            self._show_verdict(event.candidate)

    def _show_verdict(self, entry: dict) -> None:
        verdict, said = entry["verdict"], outcome(entry["verdict"]["reason"], entry.get("outrun_by"))
        accepted = said == ACCEPTED
        lines = [f"[{'green' if accepted else 'red'} bold]candidate {entry['n']}: {escape(said)}[/]"]
        failed = verdict["tests_failed"]
        if failed:  # passing tests and the result check were each printed as they were measured (observe)
            lines.append(f"  tests: {len(verdict['tests_run']) - len(failed)} of {len(verdict['tests_run'])} pass"
                         + escape(f" (failing: {', '.join(failed[:3])})"))
        speed = verdict.get("speed")
        if speed:
            lines.append(f"  speedup {formats.interval(speed)} (95% CI), {formats.p_value(speed['p_value'])}, "
                         f"{formats.plural(speed['n_base'], 'pair')}")
        elif verdict["detail"]:
            lines.append("  " + escape(verdict["detail"].splitlines()[0][:200]))
        if entry.get("commit"):
            lines.append(f"  committed {entry['commit'][:10]}")
        self.console.print("\n".join(lines))

    # -- between candidates ---------------------------------------------------------------------------------------
    def next_step(self, state: RunState) -> Step:
        budget = "no limit" if state.budget_usd is None else f"${state.budget_usd:.2f}"
        self.console.print(f"candidates {state.done} of {state.max_iterations}, "
                           f"{formats.plural(len(state.commits), 'commit')} kept, "
                           f"model spend ${state.spent_usd:.4f} of {budget}")
        while True:
            action = self._choice("[c]ontinue, [u]ndo last commit, change [l]imits, [q]uit", ["c", "u", "l", "q"],
                                  default="c")
            if action == "c":
                return Step(CONTINUE)
            if action == "u":
                if state.commits:
                    return Step(UNDO)
                self.console.print("nothing to undo: no commit on the branch yet")
                continue
            iterations = self._ask(f"max iterations (at least {max(1, state.done)})", IntPrompt,
                                   default=state.max_iterations)
            budget_text = self._ask("budget in USD (Enter: no limit)", default="" if state.budget_usd is None
                                    else f"{state.budget_usd:g}", show_default=state.budget_usd is not None).strip()
            try:
                budget_usd = float(budget_text) if budget_text else None
            except ValueError:
                budget_usd = -1.0
            if iterations < max(1, state.done) or (budget_usd is not None and budget_usd <= 0):
                self.console.print("[red]limits unchanged: iterations must be at least the candidates done, and a "
                                   "budget a positive number[/]")
                continue
            return Step(LIMITS, iterations, budget_usd)

    def undone(self, n: int, commit: str) -> None:
        self.console.print(f"undid candidate {n} (commit {commit[:10]} removed from the branch); the code is "
                           f"profiled again before the next candidate")
