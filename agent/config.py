"""Run settings, for every command: command-line flags and `--set` over `PERFAGENT_*` variables over `[tool.perfagent]`
in the target's pyproject.toml over the defaults. Each value keeps where it was given, so a wrong one is named there."""
from __future__ import annotations

import difflib
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from perfagent.repos.cache import default_root
from perfagent.sandbox import isolation
from perfagent.sandbox.behaviour import check_allow_list
from perfagent.sandbox.run import Limits

if TYPE_CHECKING:  # at run time imported where built: numpy, scipy and libcst are seconds the CLI's start must not pay
    from perfagent.localize.testselect import PlanSettings
    from perfagent.measure.stats import Sampling

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


ENV_PREFIX = "PERFAGENT_"
# PERFAGENT_* variables that are not settings: those perfagent gives its children (sandbox/run.py, sandbox/monitor.py,
# sandbox/testrun.py) and those of its test suite (tests/browser.py, tests/test_batch.py). Never warned about.
NOT_SETTINGS = frozenset(ENV_PREFIX + name for name in (
    "BEHAVIOUR_LOG", "WRITABLE", "PYTHONPATH", "REPORT_EXIT", "TEST_REPORT", "DESELECT", "COVERAGE_CONTEXT",
    "SCREENSHOT_DIR", "TEST_MARK"))


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Given:
    """A setting's value and where the user gave it, as they wrote it: what an error message names."""
    value: object
    source: str  # "--set min-efect=0.1", "PERFAGENT_MIN_EFFECT=abc", "/r/pyproject.toml, line 7", "--max-iterations"
    spelling: str  # the setting's name as written there: "min-efect", "min_effect"


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workload: str | None = Field(None, description="a .py file defining setup() and workload(), or a shell command")
    model: str | None = Field(None, description="litellm model name, scripted:FILE (recorded replies), or "
                              "oracle:PATCH (a known patch as the one reply)")
    tests: list[str] = Field(default_factory=list, description="pytest paths / node ids; empty: chosen by coverage")
    compare_output: bool = Field(True, description="a command workload's stdout must stay the same; false: only its "
                                 "exit status counts")
    api_base: str | None = Field(None, description="OpenAI-compatible server URL (vLLM, Ollama, ...)")
    max_iterations: int = Field(8, ge=1, description="candidates to try at most")
    budget_usd: float | None = Field(None, gt=0, description="hard limit on model spend (needs a known price)")
    max_calls: int | None = Field(None, ge=1, description="hard limit on model calls")
    max_tokens: int | None = Field(None, ge=1, description="hard limit on prompt and completion tokens together")
    price_input_per_mtok: float | None = Field(None, ge=0, description="USD per million prompt tokens, for models "
                                               "litellm has no price for (local servers, new models)")
    price_output_per_mtok: float | None = Field(None, ge=0, description="USD per million completion tokens")
    patience: int = Field(5, ge=1, description="stop after this many rejected candidates in a row")
    python: str = Field(sys.executable, description="interpreter that runs the target's code and tests")
    top_k: int = Field(3, ge=1, description="hotspots shown to the model in detail")
    prompt_tokens: int = Field(10000, ge=1000, description="budget of one optimize prompt in tokens (litellm's count "
                               "for the model); the code shown is shortened to fit")
    profile_seconds: float = Field(3.0, gt=0, description="how long the workload is sampled for the profile")
    sample_seconds: float = Field(1.0, gt=0, description="duration of the workload calls behind one timing value "
                                  "at the careful end (loop calibration): small effects are decided on these")
    short_sample_seconds: float = Field(0.1, gt=0, description="duration behind the first, short values, on which "
                                        "large effects are decided; at or above sample-seconds: long values only")
    decision_rule: Literal["sequential", "paired", "mannwhitney"] = Field(
        "sequential", description="sequential: decide at 3, 5, 8, 10, ... pairs as soon as the answer is clear (alpha "
        "spent over the looks); paired / mannwhitney: the earlier fixed-look rules")
    min_effect: float = Field(0.03, ge=0, description="smallest speedup worth keeping (0.03 = 3% faster)")
    objective: Literal["time", "memory"] = Field(
        "time", description="what candidates must lower: time (the workload's speed), or memory (its peak memory per "
        "call, lower by min-effect with the same statistics as time, and its time not worse by more than min-effect)")
    max_memory_growth: float = Field(1.5, ge=1, description="reject a candidate whose peak memory per workload call "
                                     "exceeds this multiple of the unmodified code's (1.5 = 50% more); growth under "
                                     "1 MiB never counts; not used with objective = memory")
    generality_checks: bool = Field(True, description="hold candidates to variants of setup() they have not seen, "
                                    "their recorded calls to the functions that do the work, and their first calls in "
                                    "a process; false: the benchmark's own input and result only, as SWE-fficiency "
                                    "checks")
    allow_cross_call_caching: bool = Field(False, description="accept a gain that only calls after the first in a "
                                           "process show (results kept from call to call): for real use that "
                                           "repeats identical calls; the verdict says so")
    alpha: float = Field(0.01, gt=0, lt=1, description="the chance of accepting identical code, over every look")
    min_samples: int = Field(5, ge=3, description="pairs of long values before their first decision")
    max_samples: int = Field(40, ge=5, description="pairs of long values at most; still undecided: too noisy")
    edit_retries: int = Field(2, ge=0, description="times a non-applying edit is sent back to the model")
    candidates_per_round: int = Field(1, ge=1, le=8, description="different candidates asked for the same hotspots "
                                      "at once: all get the cheap checks, the survivors are timed, the fastest "
                                      "significant one (or two survivors' changes together) is kept; each counts "
                                      "against max-iterations and the budget")
    minimal_patches: bool = Field(True, description="before committing an accepted candidate, try it without each "
                                  "function's (or module-level) hunks and keep the smallest version that passes every "
                                  "check with a speedup not significantly lower (its interval reaches the full one's)")
    timeout_s: float = Field(600.0, gt=0, description="wall-clock limit for baseline runs")
    candidate_timeout_s: float = Field(30.0, gt=0, description="floor of a candidate's time limit, which is "
                                       "otherwise 10x the baseline's time")
    memory_mb: int = Field(4096, ge=64, description="address-space limit of every child process")
    max_processes: int = Field(256, ge=8, description="processes and threads a child may have alive at once")
    isolation: str = Field("auto", description="auto (the strongest that works here), bubblewrap, landlock, unshare "
                           "or rlimits (the table in docs/how-it-works.md says what each protects)")
    allow_behaviour: list[str] = Field(default_factory=list, description="what a candidate may do that the unmodified "
                                       "code did not: KIND or KIND:GLOB, KIND one of write, process, network, native, "
                                       "signal, secret (e.g. process:git, write:~/.cache/*)")
    allow_edits: list[str] = Field(default_factory=list, description="globs of protected files (tests, CI, "
                                   "packaging) that candidates may edit all the same")
    rebuild_cmd: str | None = Field(None, description="shell command run in the sandbox after a change to any file "
                                    "but Python source, e.g. to rebuild compiled extensions in place; unset, the "
                                    "build a setup.py declares (repos/builds.py)")
    allow_failing_tests: bool = Field(False, description="exclude tests failing at baseline instead of stopping")
    require_tests: bool = Field(False, description="stop when no test reaches the hot functions, instead of running "
                                "with a warning that correctness rests on the result comparison alone")
    whole_suite_files: int = Field(40, ge=0, description="a suite with at most this many test files runs whole under "
                                   "coverage at baseline; a larger one is searched for the files that reach the code")
    files_per_function: int = Field(3, ge=1, description="test files run under coverage for each function in "
                                    "question (the likeliest by name, imports and mentions)")
    test_file_timeout_s: float = Field(300.0, gt=0, description="limit for one selected test file's baseline run "
                                       "(the named or whole-suite runs have timeout-s)")
    cache: bool = Field(True, description="reuse baseline test outcomes, coverage and workload measurements of "
                        "earlier runs on the same commit and interpreter")
    cache_dir: Path = Field(default_factory=default_root, description="where that cache lives")


    @model_validator(mode="after")
    def _allow_list_names_kinds(self):
        check_allow_list(self.allow_behaviour)
        return self

    @model_validator(mode="after")
    def _sample_counts(self):
        if self.min_samples > self.max_samples:
            raise ValueError("min-samples must not exceed max-samples")
        if self.decision_rule != "sequential" and self.min_samples < 8:
            raise ValueError(f"decision-rule {self.decision_rule} needs min-samples >= 8 (its rank test on n pairs "
                             f"cannot go below p = 2**-n); 10 was its default")
        return self

    @model_validator(mode="after")
    def _prices_in_pairs(self):
        if (self.price_input_per_mtok is None) != (self.price_output_per_mtok is None):
            raise ValueError("give both price-input-per-mtok and price-output-per-mtok, or neither")
        return self

    @property
    def prices(self) -> tuple[float, float] | None:
        return (self.price_input_per_mtok, self.price_output_per_mtok) if self.price_input_per_mtok is not None \
            else None

    def limits(self, **changes) -> Limits:
        """What every child process of a command gets: these bounds, at the isolation level asked for; `changes` set
        fields of Limits otherwise (evaluate's longer timeout, a test's level)."""
        if "isolation" not in changes:  # choosing probes the machine: not for a level already chosen
            changes["isolation"] = isolation.choose(self.isolation)
        return Limits(**{"timeout_s": self.timeout_s, "memory_mb": self.memory_mb, "processes": self.max_processes,
                         **changes})

    def plan_settings(self) -> PlanSettings:
        """How the baseline finds and runs the tests that guard the code."""
        from perfagent.localize.testselect import PlanSettings

        return PlanSettings(self.tests, self.whole_suite_files, self.files_per_function, self.test_file_timeout_s,
                            self.allow_failing_tests)

    def sampling(self) -> Sampling:
        """The decision rule of every timing comparison (optimize's, evaluate's)."""
        from perfagent.measure.stats import Sampling

        return Sampling(test=self.decision_rule, min_samples=self.min_samples, max_samples=self.max_samples,
                        alpha=self.alpha, min_effect=self.min_effect,
                        warmup=0 if self.decision_rule == "sequential" else 1)


def dashed(name: str) -> str:
    """A setting's name as [tool.perfagent] and --set write it (min-effect)."""
    return name.replace("_", "-")


def _name(spelling: str) -> str:
    """The setting a spelling means (min-effect, min_effect: min_effect), if it is one."""
    return spelling.strip().replace("-", "_")


def _nearest(name: str) -> str | None:
    """The setting closest to a misspelt name (min_efect: min_effect), if one is close."""
    close = difflib.get_close_matches(_name(name).lower(), list(Settings.model_fields), n=1)
    return close[0] if close else None


_TABLE = re.compile(r"\[\s*tool\s*\.\s*perfagent\s*\]")
_KEY = re.compile(r"""\s*["']?([\w-]+)["']?\s*=""")


def _key_lines(text: str) -> dict[str, int]:
    """The line of each key of the [tool.perfagent] table in a pyproject.toml, for messages (tomllib has none)."""
    lines, inside = {}, False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("["):
            inside = bool(_TABLE.match(line.strip()))
        elif inside and (key := _KEY.match(line)):
            lines.setdefault(key.group(1), number)
    return lines


def pyproject_settings(repo: Path) -> dict[str, Given]:
    """The [tool.perfagent] table of the repository's pyproject.toml, each value with its file and line."""
    path = Path(repo) / "pyproject.toml"
    if not path.is_file():
        return {}
    text = path.read_text(encoding="utf-8")
    try:
        section = tomllib.loads(text).get("tool", {}).get("perfagent", {})
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    lines = _key_lines(text)
    return {_name(key): Given(value, f"{path}, line {lines[key]}" if key in lines else f"[tool.perfagent] in {path}",
                              key) for key, value in section.items()}


def _from_text(key: str, value: str) -> object:
    """A setting given as text (KEY=VALUE, an environment variable): lists are comma-separated, the rest is parsed by
    the field's type."""
    field = Settings.model_fields.get(key)
    if field is not None and getattr(field.annotation, "__origin__", None) is list:
        return [v.strip() for v in value.split(",") if v.strip()]
    return value.strip()


def assignments(items: list[str]) -> dict[str, Given]:
    """--set KEY=VALUE items (KEY as in pyproject.toml, e.g. min-effect) as settings values."""
    values = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item}: expected KEY=VALUE, e.g. --set min-effect=0.05")
        values[_name(key)] = Given(_from_text(_name(key), value), f"--set {item}", key.strip())
    return values


def environment_settings(environ: dict[str, str], warn: Callable[[str], None] | None = None) -> dict[str, Given]:
    """Settings from PERFAGENT_<NAME> variables (e.g. PERFAGENT_MIN_EFFECT=0.05). `warn` hears of each variable that
    names no setting, which is ignored (perfagent's own internal variables aside)."""
    values = {}
    for variable, value in sorted(environ.items()):
        if not variable.startswith(ENV_PREFIX) or variable in NOT_SETTINGS:
            continue
        name = variable[len(ENV_PREFIX):].lower()
        if name in Settings.model_fields:
            values[name] = Given(_from_text(name, value), variable, variable)
        elif warn:
            close = _nearest(name)
            warn(f"{variable} is not a perfagent setting and is ignored"
                 + (f"; did you mean {ENV_PREFIX}{close.upper()}?" if close else ""))
    return values


def _expected(message: str) -> str:
    """pydantic's wording of a problem as perfagent says it: what is expected."""
    return message.removeprefix("Value error, ").replace("Input should be ", "expected ", 1)


def _problems(given: dict[str, Given], errors: list[dict]) -> list[str]:
    """Each of pydantic's errors, with the value and where it was given; a rule over several settings (min-samples
    and max-samples) names where each of those was given."""
    problems = []
    for error in errors:
        name = error["loc"][0] if error["loc"] else None
        if name in given:
            value = json.dumps(given[name].value, default=str)
            problems.append(f"invalid value {value} for {dashed(name)} ({given[name].source}): "
                            f"{_expected(error['msg'])}")
            continue
        message = _expected(error["msg"])
        named = [f"{dashed(n)} from {g.source}" for n, g in sorted(given.items(), key=lambda i: message.find(dashed(i[0])))
                 if dashed(n) in message]
        problems.append(message + (f" ({'; '.join(named)})" if named else ""))
    return problems


def validate(given: dict[str, Given], needs: tuple[str, ...] = (), repo: Path | None = None) -> Settings:
    """Settings of the given values. A ConfigError names every wrong one: its source, as the user wrote it, the
    nearest valid name of a misspelt one, the value and what is expected; and each of `needs` given nowhere."""
    problems = []
    for name, g in given.items():
        if name not in Settings.model_fields:
            close = _nearest(name)
            problems.append(f"unknown setting {g.spelling} ({g.source})"
                            + (f"; did you mean {dashed(close)}?" if close else ""))
    settings = None
    try:
        settings = Settings(**{name: g.value for name, g in given.items() if name in Settings.model_fields})
    except ValidationError as exc:
        problems += _problems(given, exc.errors())
    if settings is not None:
        table = f"[tool.perfagent] of {Path(repo) / 'pyproject.toml'}" if repo else "[tool.perfagent]"
        problems += [f"no {dashed(n)} given: pass --{dashed(n)}, set {ENV_PREFIX}{n.upper()} or write {dashed(n)} in "
                     f"{table}" for n in needs if getattr(settings, n) is None]
    if problems:
        raise ConfigError(problems[0] if len(problems) == 1 else "invalid settings:\n  " + "\n  ".join(problems))
    return settings


def load_settings(repo: Path, given: dict, environ: dict[str, str] | None = None,
                  needs: tuple[str, ...] = ("workload", "model"), warn: Callable[[str], None] | None = None) -> Settings:
    """Settings for `repo`, each from the first place that gives it: `given` (the command line: Given values, or bare
    ones whose flag is named after the setting; None: not given), PERFAGENT_* variables of `environ` (default: this
    process's; `warn` hears of those that name no setting), its [tool.perfagent] table, the defaults. `needs`: the
    settings the command cannot do without."""
    values = {**pyproject_settings(repo), **environment_settings(os.environ if environ is None else environ, warn)}
    for name, value in given.items():
        if value is not None and value != []:
            values[name] = value if isinstance(value, Given) else Given(value, f"--{dashed(name)}", dashed(name))
    return validate(values, needs, repo)
