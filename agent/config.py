"""Run settings: command-line flags over `[tool.perfagent]` in the target's pyproject.toml over defaults."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from perfagent.repos.cache import default_root
from perfagent.sandbox.behaviour import check_allow_list

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


ENV_PREFIX = "PERFAGENT_"


class ConfigError(ValueError):
    pass


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workload: str = Field(description="a .py file defining setup() and workload(), or a shell command")
    model: str = Field(description="litellm model name, or scripted:PATH for recorded responses")
    tests: list[str] = Field(default_factory=list, description="pytest paths / node ids; empty: chosen by coverage")
    compare_output: bool = Field(True, description="a command workload's stdout must stay the same; false: only its "
                                 "exit status counts")
    api_base: str | None = None
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
    profile_seconds: float = Field(3.0, gt=0)
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
                           "or rlimits (the README's table says what each protects)")
    allow_behaviour: list[str] = Field(default_factory=list, description="what a candidate may do that the unmodified "
                                       "code did not: KIND or KIND:GLOB, KIND one of write, process, network, native, "
                                       "signal, secret (e.g. process:git, write:~/.cache/*)")
    allow_edits: list[str] = Field(default_factory=list, description="globs of protected files (tests, CI, "
                                   "packaging) that candidates may edit all the same")
    rebuild_cmd: str | None = Field(None, description="shell command run in the sandbox after each code change, "
                                    "e.g. to rebuild compiled extensions in place")
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


def pyproject_settings(repo: Path) -> dict:
    path = Path(repo) / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    section = data.get("tool", {}).get("perfagent", {})
    return {key.replace("-", "_"): value for key, value in section.items()}


def _from_text(key: str, value: str) -> object:
    """A setting given as text (KEY=VALUE, an environment variable): lists are comma-separated, the rest is parsed by
    the field's type."""
    field = Settings.model_fields.get(key)
    if field is not None and getattr(field.annotation, "__origin__", None) is list:
        return [v.strip() for v in value.split(",") if v.strip()]
    return value.strip()


def assignments(items: list[str]) -> dict:
    """--set KEY=VALUE items (KEY as in pyproject.toml, e.g. min-effect) as settings values."""
    values = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item}: expected KEY=VALUE, e.g. --set min-effect=0.05")
        key = key.strip().replace("-", "_")
        values[key] = _from_text(key, value)
    return values


def environment_settings(environ: dict[str, str]) -> dict:
    """Settings from PERFAGENT_<NAME> variables (e.g. PERFAGENT_MIN_EFFECT=0.05)."""
    given = {name: environ.get(ENV_PREFIX + name.upper()) for name in Settings.model_fields}
    return {name: _from_text(name, value) for name, value in given.items() if value is not None}


def load_settings(repo: Path, overrides: dict, environ: dict[str, str] | None = None) -> Settings:
    """Settings for `repo`, each from the first place that gives it: non-None `overrides` (the command line),
    PERFAGENT_* variables of `environ` (default: this process's), its [tool.perfagent] table, the defaults."""
    values = pyproject_settings(repo)
    values.update(environment_settings(os.environ if environ is None else environ))
    values.update({k: v for k, v in overrides.items() if v is not None and v != []})
    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid settings (flags, PERFAGENT_* variables or [tool.perfagent] in "
                          f"{repo}/pyproject.toml): {problems}") from None
