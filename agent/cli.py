"""perfagent's command line: optimize, profile, demo, branches, batch, evaluate, report.

Only typer, rich and the settings load with this module, so --help, --version and a wrong flag or setting answer at
once: what a command runs on (numpy, scipy, git, libcst, litellm: seconds to import, more on a busy machine) is
imported in its body, after its input has been checked."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import traceback
from enum import Enum
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import Callable, Optional

import typer
import typer.core
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from perfagent import reasons, workloads
from perfagent.config import ConfigError, Given, Settings, assignments, dashed, environment_settings, load_settings, \
    validate
from perfagent.record import new_run_directory, runs_folder
from perfagent.repos.cache import default_root
from perfagent.summary import Summary
from perfagent import formats

# plain help, as click and pytest print it (rich markup would take [tool.perfagent] for a style and drop it), as wide as
# the terminal up to 120 columns
app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                  context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120})


class _Command(typer.core.TyperCommand):
    """A usage line as other tools write it, `perfagent optimize [OPTIONS] REPO` (typer braces required arguments)."""

    def collect_usage_pieces(self, ctx) -> list[str]:
        return [piece.strip("{}") for piece in super().collect_usage_pieces(ctx)]


def command(short: str):
    """A subcommand; `short` is its line in `perfagent --help`."""
    return app.command(cls=_Command, short_help=short)


UNWRAPPED_WIDTH = 1000  # wider than any line perfagent prints


def _print_version(asked: bool) -> None:
    if asked:
        print(f"perfagent {version('perfagent')}")
        raise typer.Exit()


@app.callback()
def main(_version: bool = typer.Option(False, "--version", "-V", callback=_print_version, is_eager=True,
                                       help="Print perfagent's version and exit.")):
    """An LLM-driven performance engineer: profile, patch, verify, keep only real speedups."""


def _console() -> Console:
    """On a terminal, rich fits lines to its width. Anywhere else (a pipe, a log, CI) a line is never hard-wrapped
    and tables take the width they need, so messages, paths and tables stay whole for grep."""
    if Console().is_terminal:
        return Console(highlight=False)
    return Console(highlight=False, soft_wrap=True, width=UNWRAPPED_WIDTH)


console = _console()
errors = Console(stderr=True, highlight=False, soft_wrap=True, width=UNWRAPPED_WIDTH)
EXAMPLE = Path(workloads.__file__).parent

# Exit codes, one per way a run ends (the table in docs/usage.md)
IMPROVED = 0  # finished, with commits on the new branch
NOT_IMPROVED = 1  # finished, nothing accepted (no branch left)
TASKS_FAILED = 1  # batch: finished, but some task failed (it has no prediction and is tried again on resume)
USAGE = 2  # bad flags, settings, repository, workload file, test paths or task file
MODEL_FAILED = 3  # the model could not be reached or answered nonsense
USER_CODE_FAILED = 4  # the user's workload or tests fail on the unmodified code
INTERNAL = 70  # a bug in perfagent itself (EX_SOFTWARE)
INTERRUPTED = 130  # Ctrl-C; SIGTERM and SIGHUP exit 128 + their number (143, 129)

# The first matching class decides (subclasses before their bases). Named by module, so that telling an error's kind
# imports nothing: a class whose module was never imported cannot have been raised.
FAILURES = (("perfagent.model.llm", "ModelConfigError", USAGE), ("perfagent.model.llm", "ModelError", MODEL_FAILED),
            ("perfagent.loop.baseline", "BaselineError", USER_CODE_FAILED),
            ("perfagent.localize.hotspots", "ProfileError", USER_CODE_FAILED),
            ("perfagent.localize.testselect", "FailingTests", USER_CODE_FAILED),
            ("perfagent.config", "ConfigError", USAGE), ("perfagent.measure.workload", "WorkloadError", USAGE),
            ("perfagent.sandbox.workspace", "WorkspaceError", USAGE),
            ("perfagent.sandbox.isolation", "IsolationError", USAGE),
            ("perfagent.repos.cache", "InterpreterError", USAGE),
            ("perfagent.localize.testselect", "TestSelectionError", USAGE),
            ("perfagent.runs.runner", "TaskFileError", USAGE), ("perfagent.report.render", "ReportError", USAGE),
            ("perfagent.repos.branches", "BranchError", USAGE))


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: unwinds like Ctrl-C, exits 128 + the signal's number."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + signum


def _terminate_on_sigterm() -> None:
    """SIGTERM and SIGHUP unwind like Ctrl-C, so worktrees are removed and child process groups killed."""
    def handler(signum, frame):
        raise Terminated(signum)
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


def _interrupted(exc: KeyboardInterrupt) -> int:
    return exc.exit_code if isinstance(exc, Terminated) else INTERRUPTED


def _fail(message: str, code: int = USAGE):
    errors.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def _warn(message: str) -> None:
    errors.print(f"[yellow]warning:[/] {escape(message)}")


def _fail_for(exc: BaseException):
    """A known failure: its message and exit code. Anything else is perfagent's own bug: its traceback, and a
    request to report it."""
    for module, name, code in FAILURES:
        kind = getattr(sys.modules.get(module), name, None)
        if kind is not None and isinstance(exc, kind):
            _fail(str(exc), code)
    errors.print("".join(traceback.format_exception(exc)).rstrip(), markup=False)
    _fail(f"perfagent stopped on a bug of its own ({type(exc).__name__}: {exc}). Please report it with the "
          f"traceback above; your repository is unchanged", INTERNAL)


# -- settings on the command line ---------------------------------------------------------------------------------
def _setting(name: str, *flags: str, help: str | None = None, metavar: str | None = None):
    """An option that gives setting `name`: None when not given (then PERFAGENT_*, [tool.perfagent] or the default
    decide); its help is the setting's description (or `help`) and its default, as typer shows other defaults."""
    field = Settings.model_fields[name]
    default = field.get_default(call_default_factory=True)
    shown = f"  [default: {json.dumps(default) if isinstance(default, bool) else default}]" \
        if default not in (None, []) and field.annotation is not bool else ""
    return typer.Option(None, *(flags or [f"--{dashed(name)}"]), help=(help or field.description) + shown,
                        metavar=metavar)


SET_HELP = ("any setting, as KEY=VALUE with KEY as in [tool.perfagent] (e.g. --set min-effect=0.05; repeatable); "
            "PERFAGENT_KEY variables too (PERFAGENT_MIN_EFFECT=0.05). docs/settings.md lists them all.")


def _settings(repo: Path, flags: dict, setting: list[str] | None, needs: tuple[str, ...]) -> Settings:
    """A command's settings: its flags (None: not given) over --set over PERFAGENT_* over the repository's
    [tool.perfagent] over the defaults. A wrong one stops the command (exit 2) before anything heavy loads."""
    try:
        given = {name: value for name, value in flags.items() if value is not None and value != []}
        return load_settings(repo, {**assignments(setting or []), **given}, needs=needs, warn=_warn)
    except ConfigError as exc:
        _fail(str(exc))


# -- optimize and demo ------------------------------------------------------------------------------------------
def _save_report(folder: Path) -> None:
    """Write folder/report.html (and a run's pull_request.md); a report that cannot be rendered never fails the run
    that made the data."""
    from perfagent.report.pull_request import PULL_REQUEST
    from perfagent.report.render import write_report

    try:
        console.print(f"report: {write_report(folder)}")
        if (folder / PULL_REQUEST).is_file():
            console.print(f"pull request: {folder / PULL_REQUEST}")
    except Exception as exc:  # noqa: BLE001 - reported, the run's own outcome stands
        console.print(f"[yellow]could not write the report: {escape(f'{type(exc).__name__}: {exc}')}[/]")


def _summary_table(summary: Summary) -> Table:
    table = Table(title=f"perfagent run {summary.run_id}", expand=console.is_terminal)
    table.add_column("#", justify="right", min_width=2, no_wrap=True)
    table.add_column("verdict", no_wrap=True, min_width=22)
    table.add_column("speedup [95% CI]", no_wrap=True, min_width=18)
    table.add_column("p", no_wrap=True)
    table.add_column("change", overflow="ellipsis", no_wrap=True, ratio=1)
    for c in summary.candidates:
        speed = c.verdict.speed if c.verdict else None
        table.add_row(str(c.n), f"[{'green' if c.kept else 'red'}]{c.outcome}[/]", formats.interval(speed),
                      formats.p_value(speed.p_value if speed else None, prefix=False), c.summary)
    return table


def _report(summary: Summary, out: Path) -> None:
    console.print(_summary_table(summary))
    final, llm = summary.final, summary.llm
    if final:
        s = final.speed
        console.print(f"[bold green]overall: {s.speedup:.2f}x faster[/] (95% CI {s.ci_low:.2f}-"
                      f"{s.ci_high:.2f}, {formats.p_value(s.p_value)}; {escape(formats.medians(s))}) on branch "
                      f"[bold]{summary.branch}[/]")
        console.print(f"see the commits: git -C {summary.repo} log --stat "
                      f"{summary.base_commit[:10]}..{summary.branch}")
    else:
        console.print("no candidate was accepted; no branch was left behind")
    if summary.baseline:
        console.print(f"baseline {formats.noise(summary.baseline.noise)}")
    cost = llm.cost_usd  # a finished run has its model record
    console.print(f"model: {formats.plural(llm.calls, 'call')}, {llm.prompt_tokens}+{llm.completion_tokens} tokens, "
                  f"cost {'unknown' if cost is None else f'${cost:.4f}'}; stop: {summary.stop_reason}")
    console.print(f"run directory: {out}")


@command("Make a workload faster: verified speedups, one commit each, on a new branch.")
def optimize(  # one parameter per command-line option (typer)
    repo: Path = typer.Argument(..., metavar="REPO", help="the git repository to optimize (its top folder)"),
    workload: Optional[str] = _setting("workload", "--workload", "-w"),
    tests: Optional[list[str]] = _setting("tests", "--tests", "-t", metavar="PATH", help="pytest paths or node ids "
                                          "(repeatable); default: the test files that cover the hotspots"),
    model: Optional[str] = _setting("model", "--model", "-m"),
    api_base: Optional[str] = _setting("api_base"),
    max_iterations: Optional[int] = _setting("max_iterations"),
    budget_usd: Optional[float] = _setting("budget_usd"),
    max_calls: Optional[int] = _setting("max_calls"),
    max_tokens: Optional[int] = _setting("max_tokens"),
    price_input_per_mtok: Optional[float] = _setting("price_input_per_mtok"),
    price_output_per_mtok: Optional[float] = _setting("price_output_per_mtok"),
    python: Optional[str] = _setting("python"),
    allow_failing_tests: Optional[bool] = _setting("allow_failing_tests", "--allow-failing-tests",
                                                   help="leave out tests named with --tests that fail at baseline "
                                                        "(tests perfagent chose always are)"),
    allow_behaviour: Optional[list[str]] = _setting("allow_behaviour", "--allow-behaviour", metavar="KIND[:GLOB]",
                                                    help="what candidates "
                                                    "may do that the unmodified code did not (repeatable): KIND or "
                                                    "KIND:GLOB, e.g. process:git, network, write:~/.cache/*"),
    isolation: Optional[str] = _setting("isolation"),
    objective: Optional[str] = _setting("objective"),
    out: Optional[Path] = typer.Option(None, help="run directory  [default: REPO/.perfagent/runs/RUN_ID]"),
    no_cache: bool = typer.Option(False, "--no-cache", help="measure the baseline afresh: neither read nor write "
                                  "the cache of baseline tests, coverage and timing (~/.cache/perfagent)"),
    interactive: bool = typer.Option(False, "--interactive", "-i", help="review in the terminal: pick hotspots; "
                                     "accept, edit or reject each candidate; undo, change limits, quit"),
    setting: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help=SET_HELP),
):
    """Make a workload faster: a new branch perfagent/RUN_ID gets one commit per verified speedup. Each option
    overrides the same setting in PERFAGENT_* variables and in [tool.perfagent] of the repository's pyproject.toml."""
    flags = dict(workload=workload, tests=tests, model=model, api_base=api_base, max_iterations=max_iterations,
                 budget_usd=budget_usd, python=python, max_calls=max_calls, max_tokens=max_tokens,
                 price_input_per_mtok=price_input_per_mtok, price_output_per_mtok=price_output_per_mtok,
                 allow_failing_tests=allow_failing_tests, allow_behaviour=allow_behaviour, isolation=isolation,
                 objective=objective, cache=Given(False, "--no-cache", "no-cache") if no_cache else None)
    _run_optimizer(repo, _settings(repo, flags, setting, needs=("workload", "model")), out, interactive)


def _check_model_key(settings: Settings) -> None:
    """A missing API key of a usual provider is said at once; otherwise say why the next seconds are quiet."""
    from perfagent.model.keys import missing_key, missing_key_message

    variable = missing_key(settings.model, settings.api_base)
    if variable:
        _fail(missing_key_message(settings.model, [variable]))
    console.print("loading perfagent's analysis modules and the model library (a few seconds, more on a busy "
                  "machine)")


def _run_optimizer(repo: Path, settings: Settings, out: Path | None, interactive: bool = False) -> None:
    """optimize's body, for `optimize` and `demo`: `out` None puts the run directory in the repository's runs
    folder."""
    _terminate_on_sigterm()
    if interactive and not (sys.stdin.isatty() and console.is_terminal):
        _fail("--interactive needs a terminal for input and output: run it in one (or under tmux/screen), "
              "or drop --interactive")
    _check_model_key(settings)
    from perfagent.loop.interactive import TerminalReviewer
    from perfagent.loop.optimizer import Optimizer
    from perfagent.report.live import TerminalObserver

    optimizer, observer = None, TerminalObserver(console, interactive)
    try:
        optimizer = Optimizer(repo, settings, out, observer,
                              reviewer=TerminalReviewer(console) if interactive else None)
        if out is None:  # the Optimizer's own default is the current folder's perfagent-runs/
            optimizer.out = new_run_directory(optimizer.repo_path, optimizer.run_id)
        console.print(f"run directory: {optimizer.out}")
        summary = optimizer.run()
    except BaseException as exc:
        observer.close()  # a progress display the interruption left open
        if optimizer is not None and (optimizer.out / "summary.json").exists():  # what the run recorded so far
            _save_report(optimizer.out)
        if isinstance(exc, KeyboardInterrupt):
            console.print("[yellow]interrupted: worktrees removed; commits made so far stay on the branch[/]")
            raise typer.Exit(_interrupted(exc))
        if isinstance(exc, (typer.Exit, SystemExit)):
            raise
        _fail_for(exc)
    _report(summary, optimizer.out)
    _save_report(optimizer.out)
    if summary.status == reasons.MODEL_FAILED:
        _fail(f"the model failed: {summary.stop_reason}", MODEL_FAILED)
    raise typer.Exit(IMPROVED if summary.accepted else NOT_IMPROVED)


@command("Optimize the bundled example with recorded model responses (offline, no API key).")
def demo(  # one parameter per command-line option (typer)
    target: Path = typer.Option(Path("perfagent-demo"), help="where to create the example repository"),
    max_iterations: int = typer.Option(Settings.model_fields["max_iterations"].default, help="candidates to try"),
):
    """Optimize the bundled textstats example with recorded model responses (offline, no API key). The run
    directory goes to the example repository's runs folder, TARGET/.perfagent/runs/RUN_ID."""
    if target.exists():
        _fail(f"{target} already exists (the example repository of an earlier demo, its runs in "
              f"{runs_folder(target)}): remove it, or pass --target")
    shutil.copytree(EXAMPLE / "textstats", target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    git = ["git", "-C", str(target), "-c", "user.name=perfagent demo", "-c", "user.email=demo@localhost"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "textstats: initial import"], check=True)
    session = EXAMPLE / "textstats.session.json"
    console.print(f"created the example repository {target}; optimizing it with the recorded responses in "
                  f"{session.name} (a scripted model, not a live one)")
    flags = {"workload": "workload.py", "model": f"scripted:{session}", "max_iterations": max_iterations}
    _run_optimizer(target, _settings(target, flags, None, needs=()), None)


# -- profile ------------------------------------------------------------------------------------------------------
def _profile_table(result) -> Table:
    table = Table(title=f"{result.profiler}{' with native frames' if result.native else ''}: {result.samples} samples")
    for column in ("rank", "function", "file:lines", "score", "self", "cumulative", "calls", "hottest lines"):
        table.add_column(column)
    for i, h in enumerate(result.hotspots, 1):
        table.add_row(str(i), h.qualname, f"{h.file}:{h.start}-{h.end}", f"{h.score:.3f}", f"{h.self_share:.1%}",
                      f"{h.cum_share:.1%}", "-" if h.calls is None else str(h.calls),
                      ", ".join(f"{line} ({share:.0%})" for line, share in h.lines[:3]))
    return table


def _profile(repo: Path, settings: Settings, raw: Path | None):
    """The profile of the committed code, its extensions built as optimize builds them. py-spy's raw stacks go with
    the temporary folder, unless `raw` keeps them."""
    from perfagent.localize.hotspots import ProfileError, ProfileOptions, profile_workload
    from perfagent.loop.environment import Environment
    from perfagent.measure.workload import Workload
    from perfagent.sandbox.workspace import Workspaces, open_repo

    git_repo = open_repo(repo)
    spec = Workload.parse(settings.workload, repo)
    ws = Workspaces(git_repo, "profile")
    try:
        worktree = ws.scratch(git_repo.head.commit.hexsha)
        env = Environment(settings.python, settings.limits(), ws, settings.rebuild_cmd)
        env.adopt(worktree)  # the checkout's own build, where it has one: then only what differs is built
        failed = env.rebuild(worktree)
        if failed:
            raise ProfileError(f"the committed code does not build: {failed}")
        result = profile_workload(worktree, spec, python=settings.python, tmp=ws.tmpdir("profile"),
                                  limits=settings.limits(), options=ProfileOptions(seconds=settings.profile_seconds))
        if raw and result.raw_path:
            shutil.copyfile(result.raw_path, raw)
        result.raw_path = str(raw.resolve()) if raw and result.raw_path else None
        return result
    finally:
        ws.close()


@command("Rank the repository's own functions by where a workload spends its time.")
def profile(  # one parameter per command-line option (typer)
    repo: Path = typer.Argument(..., metavar="REPO", help="the git repository (its top folder)"),
    workload: Optional[str] = _setting("workload", "--workload", "-w"),
    seconds: Optional[float] = _setting("profile_seconds", "--seconds"),
    top: int = typer.Option(15, help="how many functions to show"),
    python: Optional[str] = _setting("python"),
    isolation: Optional[str] = _setting("isolation"),
    as_json: bool = typer.Option(False, "--json", help="print the ranking as JSON"),
    raw: Optional[Path] = typer.Option(None, help="keep py-spy's raw stacks in this file (for flame graph tools)"),
    setting: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help=SET_HELP),
):
    """Profile a workload on the committed code and rank the repository's own functions, as optimize does (the
    Localization section of docs/how-it-works.md: the attribution rules and ranking score). The workload, interpreter,
    isolation and limits are settings, read as optimize reads them."""
    _terminate_on_sigterm()
    flags = {"workload": workload, "python": python, "isolation": isolation,
             "profile_seconds": None if seconds is None else Given(seconds, "--seconds", "seconds")}
    settings = _settings(repo, flags, setting, needs=("workload",))
    try:
        result = _profile(repo, settings, raw)
    except KeyboardInterrupt as exc:
        raise typer.Exit(_interrupted(exc))
    except Exception as exc:
        _fail_for(exc)
    result.hotspots = result.top(top)
    if as_json:
        print(json.dumps(result.as_dict(), indent=2))
        return
    console.print(_profile_table(result))
    if result.note:
        console.print(f"[yellow]{result.note}[/]")


# -- branches -----------------------------------------------------------------------------------------------------
def _branch_table(top: Path, found: list) -> Table:
    table = Table(title=f"perfagent's branches in {top}", box=box.SIMPLE_HEAD)
    for column in ("branch", "last commit", "commits", "speedup", "note"):
        table.add_column(column, no_wrap=True)
    for b in found:
        note = f"checked out at {b.checked_out}" if b.checked_out else ""
        table.add_row(b.name, b.date[:16], str(b.commits), escape(b.speedup), escape(note))
    return table


@command("List perfagent's branches in a repository, or delete them.")
def branches(  # one parameter per command-line option (typer)
    repo: Path = typer.Argument(Path("."), metavar="REPO", help="the git repository (its top folder)"),
    delete: Optional[list[str]] = typer.Option(None, "--delete", "-d", metavar="RUN_ID",
                                               help="delete the branch perfagent/RUN_ID (repeatable)"),
    every: bool = typer.Option(False, "--all", help="delete all of perfagent's branches (except checked-out ones)"),
):
    """List the branches perfagent left in REPO (perfagent/RUN_ID, one per run that kept a change) with their
    commits and speedup, or delete some (--delete RUN_ID) or all (--all). Only perfagent's own branches are ever
    deleted, never a checked-out one; the runs' records stay in REPO/.perfagent/runs."""
    from perfagent.repos import branches as run_branches
    from perfagent.sandbox.workspace import open_repo

    try:
        top = Path(open_repo(repo).working_tree_dir)
        found = run_branches.run_branches(top)
        doomed = [b for b in found if not b.checked_out] if every else run_branches.chosen(found, delete or [])
        run_branches.delete(top, doomed)
    except Exception as exc:
        _fail_for(exc)
    if not (every or delete):
        console.print(_branch_table(top, found) if found else f"no perfagent branches in {top}")
        if found:
            console.print(f"delete them with: perfagent branches {top} --delete RUN_ID (repeatable), or --all")
        return
    for b in doomed:
        console.print(f"deleted {b.name} (was {b.commits} commit{'s' if b.commits != 1 else ''}, {b.speedup})")
    for b in found:
        if every and b.checked_out:
            console.print(f"[yellow]kept {b.name}: checked out at {b.checked_out}[/]")
    if not doomed:
        console.print(f"no perfagent branches to delete in {top}")


# -- batch and evaluate -------------------------------------------------------------------------------------------
CACHE = default_root()
REPO_CACHE_HELP = ("folder of git clones or mirrors, one per repository (owner__name, owner__name.git, owner+name/repo, "
                   "owner/name); bundled example repositories are built into it")


def _executor(kind: str, workers: int, ray_address: str | None):
    """Where tasks run. From here on SIGTERM and SIGHUP unwind like Ctrl-C: workers stop, worktrees are removed."""
    from perfagent.runs.executors import make_executor

    _terminate_on_sigterm()
    try:
        executor = make_executor(kind, workers, ray_address)
    except (ValueError, RuntimeError) as exc:
        _fail(str(exc))
    if executor.warning:
        console.print(f"[yellow]{executor.warning}[/]")
    console.print(f"executor: {executor.describe()}")
    return executor


def _check_task_file(tasks: Path) -> None:
    """A missing or unreadable task file, or one without a valid task, stops the command before any worker starts."""
    from perfagent.runs.runner import TaskFileError, read_task_file

    try:
        read_task_file(tasks)
    except TaskFileError as exc:
        _fail(str(exc))


def _over_tasks(run: Callable, what: str, out: Path, results: str, kept: str):
    """A batch's or an evaluation's pass, `run(say=..., progress=...)`, with its progress bar. Interrupted, it renders
    the report of what was recorded and exits 130 (143, 129 for SIGTERM, SIGHUP); a bug exits 70."""
    from perfagent.report.live import task_bar

    try:
        with task_bar(Console(stderr=True), what, redirect_stdout=console.is_terminal) as progress:
            return run(say=console.print, progress=progress)
    except KeyboardInterrupt as exc:
        if (out / results).exists():
            _save_report(out)
        console.print(f"[yellow]interrupted: {kept}[/]")
        raise typer.Exit(_interrupted(exc))
    except Exception as exc:
        _fail_for(exc)


def _progress_table(counts) -> Table:
    table = Table(title="batch progress")
    for column in ("tasks", "done", "running", "failed", "bad records", "model calls", "spend"):
        table.add_column(column, justify="right")
    spent = counts.spend or {}
    table.add_row(str(counts.total), str(counts.done), str(counts.running), str(counts.failed), str(counts.bad),
                  str(spent.get("calls", 0)),
                  f"${spent.get('usd', 0.0):.4f}" + ("+" if spent.get("cost_unknown") else ""))
    return table


def _task_settings(flags: dict, setting: list[str] | None) -> tuple[dict, Settings]:
    """What every task of a batch or an evaluation gets (its flags, --set), and the Settings they make with the
    PERFAGENT_* variables (a batch task's repository's [tool.perfagent] comes in per task): a bad setting stops the
    command before any task starts."""
    try:
        given = {**assignments(setting or []),
                 **{name: Given(value, f"--{dashed(name)}", dashed(name)) for name, value in flags.items()
                    if value is not None}}
        every_task = validate({**environment_settings(os.environ, _warn), **given})
    except ConfigError as exc:
        _fail(str(exc))
    return {name: g.value for name, g in given.items()}, every_task


def _require_price(job, every_task: Settings) -> None:
    """A USD budget needs the model's price: refused before any task starts, not once per task."""
    from perfagent.model.llm import ModelError, make_model
    from perfagent.runs.batch import ORACLE

    if not (job.budget_usd or job.task_budget_usd) or job.model == ORACLE or job.model.startswith("scripted:"):
        return
    try:
        make_model(job.model, api_base=job.api_base, prices=every_task.prices).require_price()
    except ModelError as exc:
        _fail(str(exc))


@command("Run the optimize loop on every task of a task file.")
def batch(  # one parameter per command-line option (typer)
    tasks: Path = typer.Argument(..., metavar="TASKS", help="JSONL task file (SWE-fficiency format)"),
    model: str = typer.Option(..., "--model", "-m", help="litellm model name, scripted:FILE, scripted:FOLDER "
                              "with one recorded session per task (FOLDER/INSTANCE_ID.json), or oracle (each task's "
                              "expert patch as the reply: checks the pipeline with a perfect model)"),
    out: Path = typer.Option(..., help="output folder; rerunning with the same folder resumes"),
    select_tests: bool = typer.Option(False, "--select-tests", help="let perfagent choose each task's tests, as "
                                      "optimize does without --tests, instead of the task's own list"),
    workers: int = typer.Option(1, help="tasks solved at once; each worker gets cores of its own"),
    repo_cache: Path = typer.Option(CACHE / "repos", help=REPO_CACHE_HELP),
    env_cache: Path = typer.Option(CACHE / "envs", help="where per-task Python environments are kept"),
    api_base: Optional[str] = typer.Option(None, help="OpenAI-compatible server URL (vLLM, Ollama, ...)"),
    budget_usd: Optional[float] = typer.Option(None, help="model spend limit for the whole batch (USD)"),
    max_calls: Optional[int] = typer.Option(None, help="model call limit for the whole batch"),
    task_budget_usd: Optional[float] = typer.Option(None, help="model spend limit per task (USD)"),
    max_iterations: int = typer.Option(Settings.model_fields["max_iterations"].default,
                                       help="candidates per task at most"),
    sample_seconds: Optional[float] = typer.Option(None, help="target duration of the calls behind one timing value "
                                                   "(default: perfagent's, or the task repository's setting)"),
    setting: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help="any optimize setting for "
                                                "every task, as KEY=VALUE (e.g. --set min-samples=12; repeatable)"),
    executor: str = typer.Option("local", help="local, or ray"),
    ray_address: Optional[str] = typer.Option(None, help="Ray cluster address (default: start a local Ray)"),
):
    """Run the optimize loop on every task of a task file; writes predictions.jsonl for `perfagent evaluate`."""
    from perfagent.runs.batch import BatchJob, run_batch
    from perfagent.runs.outputs import BATCH_RESULTS, PREDICTIONS

    _check_task_file(tasks)
    settings, every_task = _task_settings({"model": model, "max_iterations": max_iterations,
                                           "sample_seconds": sample_seconds}, setting)
    job = BatchJob(model=model, out=out.resolve(), repo_cache=repo_cache.expanduser(), env_cache=env_cache.expanduser(),
                   api_base=api_base, budget_usd=budget_usd, max_calls=max_calls, task_budget_usd=task_budget_usd,
                   settings=settings, select_tests=select_tests)
    _require_price(job, every_task)
    pool = _executor(executor, workers, ray_address)
    counts = _over_tasks(partial(run_batch, tasks, job, pool), "batch", out, BATCH_RESULTS,
                         f"finished tasks are kept in {out}; rerun the same command to do the rest")
    console.print(_progress_table(counts))
    _save_report(out)
    console.print(f"predictions: {out / PREDICTIONS}; score them with: perfagent evaluate {tasks} "
                  f"--predictions {out / PREDICTIONS} --out {out / 'evaluation'}")
    if counts.failed:
        raise typer.Exit(TASKS_FAILED)


def _evaluation_table(report: dict) -> Table:
    from perfagent.runs.outputs import PATCH_FUZZ

    table = Table(title="evaluation (95% intervals)", box=box.SIMPLE_HEAD, caption="speedup = base time / patched "
                  "time; ratio = speedup / expert speedup; rec. = expert speedup the task file records")
    table.add_column("task", min_width=16, overflow="fold")
    table.add_column("patch", no_wrap=True)
    for column in ("speedup", "expert", "ratio"):
        table.add_column(column, justify="right", no_wrap=True)

    def interval(value: float, low: float | None, high: float | None, unit: str = "x") -> str:
        return f"{value:.2f}{unit}" + (f"\n[{low:.2f}, {high:.2f}]" if low is not None else "")

    skipped = report["summary"].get("skipped")
    if skipped:
        table.title += f"; {skipped} task-file record{'s' if skipped > 1 else ''} skipped as not valid tasks"
    for row in report["tasks"]:
        name = escape(row.get("instance_id") or f"line {row.get('line')}")
        if row.get("skipped"):
            where = f"\n(line {row.get('line')})" if row.get("instance_id") else ""
            table.add_row(name + where, "[yellow]skipped[/]", escape(row["skipped"].splitlines()[0][:80]))
            continue
        if row.get("error"):
            table.add_row(name, "[red]error[/]", escape(row["error"].splitlines()[0][:80]))
            continue
        speed, expert, recorded = row.get("speedup"), row["expert"], row.get("recorded_expert_speedup")
        status = ("no patch" if not row.get("predicted") else "[red]no apply[/]" if not row["applied"]
                  else "[red]tests fail[/]" if not row["tests_passed"]
                  else "[red]result changed[/]" if row.get("result_unchanged") is False else "tests ok")
        if row["applied"] and row.get("apply_method") == PATCH_FUZZ:
            status += "\n[yellow]by patch --fuzz[/]"
        if row.get("general") is False:
            status += "\n[yellow]gain not general[/]"
        table.add_row(name, status,
                      interval(speed["speedup"], speed["ci_low"], speed["ci_high"]) if speed else "1.00x",
                      interval(expert["speedup"], expert["ci_low"], expert["ci_high"])
                      + (f"\nrec. {recorded:.2f}x" if recorded else ""),
                      interval(row["ratio"], row.get("ratio_ci_low"), row.get("ratio_ci_high"), ""))
    return table


def _patches(gold: bool, predictions: Path | None) -> dict[str, str] | None:
    """What evaluate scores: the patches of the predictions file, or (--gold; None) the tasks' expert patches."""
    from perfagent.runs.evaluate import read_predictions

    if gold == (predictions is not None):
        _fail("give either --predictions FILE or --gold")
    if gold:
        return None
    if not predictions.is_file():
        _fail(f"predictions file {predictions} not found")
    try:
        return read_predictions(predictions)
    except UnicodeDecodeError as exc:
        _fail(f"cannot read the predictions file {predictions}: {exc}")


@command("Score patches as SWE-fficiency does, against the tasks' expert patches.")
def evaluate(  # one parameter per command-line option (typer)
    tasks: Path = typer.Argument(..., metavar="TASKS", help="JSONL task file (SWE-fficiency format)"),
    out: Path = typer.Option(..., help="output folder (report.json, evaluation.jsonl); rerunning resumes"),
    predictions: Optional[Path] = typer.Option(None, help="predictions.jsonl (instance_id, model_patch)"),
    gold: bool = typer.Option(False, "--gold", help="score the tasks' expert patches themselves"),
    repo_cache: Path = typer.Option(CACHE / "repos", help=REPO_CACHE_HELP),
    env_cache: Path = typer.Option(CACHE / "envs", help="where per-task Python environments are kept"),
    mode: str = typer.Option("harness", help="harness: time setup()/workload() with perfagent's rules; script: run "
                             "the workload script as written and parse its 'Mean:'"),
    pairs: int = typer.Option(10, help="timing pairs per comparison"),
    timeout_s: float = typer.Option(1800, help="limit for each test run and workload run of a task"),
    sample_seconds: Optional[float] = typer.Option(None, help="target duration of the calls behind one timing value "
                                                   "(default: perfagent's)"),
    workers: int = typer.Option(1, help="tasks evaluated at once; each worker gets cores of its own"),
    executor: str = typer.Option("local", help="local, or ray"),
    ray_address: Optional[str] = typer.Option(None, help="Ray cluster address (default: start a local Ray)"),
):
    """Score patches as SWE-fficiency does: tests, speedup against the expert patch, harmonic mean of the ratios."""
    from perfagent.runs.evaluate import EvalJob, run_evaluation
    from perfagent.runs.outputs import EVALUATION, EVALUATION_REPORT

    _check_task_file(tasks)
    patches = _patches(gold, predictions)
    if mode not in ("harness", "script"):
        _fail(f"unknown --mode {mode}: use harness or script")
    job = EvalJob(out=out.resolve(), repo_cache=repo_cache.expanduser(), env_cache=env_cache.expanduser(), mode=mode,
                  pairs=pairs, timeout_s=timeout_s,
                  settings=_task_settings({"sample_seconds": sample_seconds}, None)[1])
    pool = _executor(executor, workers, ray_address)
    report = _over_tasks(partial(run_evaluation, tasks, patches, job, pool), "evaluate", out, EVALUATION,
                         f"evaluated tasks are kept in {out}; rerun the same command to go on")
    console.print(_evaluation_table(report))
    s = report["summary"]
    hmean, reach = s["harmonic_mean_ratio"], s["at_or_above_expert"]
    console.print(f"{s['scored']} of {s['tasks']} tasks scored ({s['errors']} errors); patches applied {s['applied']}, "
                  f"tests passed {s['tests_passed']}; harmonic mean speedup ratio "
                  f"{'n/a' if hmean is None else f'{hmean:.3f}'}; at or above expert speedup (within the interval): "
                  f"{'n/a' if reach is None else f'{reach:.0%}'}")
    if s.get("not_general"):
        console.print(f"{s['not_general']} scored patch(es) gain only in the benchmark's own situation (on later calls "
                      f"of a process, or not on a variant of setup()): SWE-fficiency's harness scores them as correct")
    console.print(f"report: {out / EVALUATION_REPORT}")
    _save_report(out)


# -- report -------------------------------------------------------------------------------------------------------
class ReportFormat(str, Enum):
    html = "html"
    markdown = "markdown"


@command("Render a run's, batch's or evaluation's report again (or print a run's pull request).")
def report(  # one parameter per command-line option (typer)
    folder: Path = typer.Argument(..., metavar="FOLDER", help="a run directory (optimize --out), or the --out folder "
                                  "of batch or evaluate"),
    form: ReportFormat = typer.Option(ReportFormat.html, "--format", help="html: write FOLDER/report.html (and a "
                                      "run's pull_request.md); markdown: print a run's pull request description "
                                      "to stdout"),
):
    """Render FOLDER/report.html again from the files a run, batch or evaluation left there (offline, one file), or
    print a run's pull request description (--format markdown)."""
    from perfagent.report.render import pull_request, write_report

    try:
        if form is ReportFormat.markdown:
            typer.echo(pull_request(folder), nl=False)  # plain text: rich would take [..] for markup and wrap lines
        else:
            console.print(f"report: {write_report(folder)}")
    except Exception as exc:
        _fail_for(exc)


if __name__ == "__main__":
    app()
