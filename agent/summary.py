"""summary.json, typed: the one model of a run's record. The optimizer writes through it (validated on every save) and
every reader (CLI, batch, report and its templates, branches) reads through it, so a misspelt field fails loudly on
either side. Field names are the keys on disk; a field a failed or interrupted run may lack is optional. The record
says what it was measured on: `machine`, the sandbox's `isolation` and the baseline's timing `noise`."""
from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from perfagent.reasons import outcome

# A reader of another version refuses it rather than misread it: raise it whenever a field changes meaning or goes.
FORMAT_VERSION = 1


class RecordError(ValueError):
    """A summary.json this perfagent cannot read: another format_version, or a field missing, unknown or mistyped."""


class Record(BaseModel):
    """A part of summary.json. A key it does not declare is refused, on writing and on reading."""
    model_config = ConfigDict(extra="forbid")

    def __getitem__(self, key: str):
        """Also read as the dict it is on disk (formats' helpers take either); an undeclared key is a KeyError."""
        if key not in type(self).model_fields:
            raise KeyError(key)
        return getattr(self, key)


class Speed(Record):
    """A timing comparison (measure/stats.py SpeedStats)."""
    speedup: float
    ci_low: float
    ci_high: float
    confidence: float
    p_value: float
    n_base: int
    n_cand: int
    base_median: float
    cand_median: float
    base_spread: float
    decision: str


class Samples(Record):
    """A comparison's values (stats.samples_record; memory.compare_memory adds its peaks)."""
    baseline: list[float] = []
    candidate: list[float] = []
    baseline_cpu: list[float] | None = None
    candidate_cpu: list[float] | None = None
    cpu_speedup: float | None = None
    memory_baseline: list[float] | None = None
    memory_candidate: list[float] | None = None


class Unseen(Record):
    """The speedup on one variant of setup() (loop/unseen.py)."""
    variant: str
    changes: str
    speed: Speed


class Verdict(Record):
    """A candidate's verdict (loop/verdict.py Verdict.as_dict)."""
    reason: str
    detail: str = ""
    tests_run: list[str] = []
    tests_failed: list[str] = []
    result_check: str = ""
    speed: Speed | None = None
    samples: Samples | None = None
    timing_s: float | None = None
    behaviour: list[dict] = []  # sandbox/behaviour.py Event.as_dict
    memory: dict[str, int | float | None] | None = None  # flat figures (loop/memory.py), keys by objective
    also_checked: str = ""
    unseen: list[Unseen] = []


class Dropped(Record):
    """A hunk group minimal patches took back (loop/minimal.py)."""
    group: str
    why: str


class Candidate(Record):
    """One candidate (loop/candidate.py CandidateRecord.as_dict)."""
    n: int
    summary: str
    files: list[str] = []
    functions: list[str] = []
    diff: str = ""
    commit: str | None = None
    verdict: Verdict | None = None
    verdict_at_s: float | None = None
    model_diff: str | None = None
    full_diff: str | None = None
    dropped: list[Dropped] | None = None
    tests: list[str] | None = None
    unguarded: list[str] | None = None
    review: str | None = None
    seconds: dict[str, float] | None = None
    build_s: float | None = None  # its build command's seconds (none ran: absent), apart from its tests and timing
    undone: bool | None = None
    outrun_by: int | None = None  # accepted, but this candidate of its round gained more and was committed

    @property
    def kept(self) -> bool:
        """Its commit is on the branch: accepted, and not undone by the reviewer since."""
        return bool(self.commit) and not self.undone

    @property
    def outcome(self) -> str:
        """Its verdict's reason, unless it was outrun in its round or a reviewer undid it."""
        return outcome(self.verdict.reason if self.verdict else None, self.outrun_by, bool(self.undone))


class Noise(Record):
    """The baseline's A/A timing noise (measure/stats.py Noise)."""
    pairs: int
    sample_spread: float
    pair_spread: float
    resolvable: float
    outside_spread: float | None = None
    cpu_spread: float | None = None


class Baseline(Record):
    """The unmodified code's measurement (loop/baseline.py Baseline.record)."""
    workload_seconds: float
    loops: int
    noise: Noise
    cold_start: tuple[float, float] | None = None
    cache_hits: int = 0
    memory: dict[str, int | float | None] | None = None  # peak_bytes, rss_peak_bytes; None for a command workload


class Final(Record):
    """The final branch against the original (loop/final.py)."""
    speed: Speed
    samples: Samples | None = None
    accepted: int
    memory: dict[str, int | float | None] | None = None
    from_candidate: int | None = None  # the branch is this one candidate: its own comparison stands


class Machine(Record):
    """What the numbers were measured on (record.machine), as pyperf records it."""
    cpu: str | None
    cores: int | None
    load_at_start: float
    load_max: float | None = None  # the highest 1-minute load average seen at the run's steps
    python: str
    platform: str


class Llm(Record):
    calls: int
    cost_usd: float | None
    prompt_tokens: int
    completion_tokens: int


class Tests(Record):
    """The baseline's test plan (loop/optimizer.py tests_record)."""
    files: dict[str, float]  # test file (or --tests target) -> seconds of its baseline run
    why: dict[str, str]
    passing: int
    flaky: list[str]
    whole_suite: bool


class Round(Record):
    """What a round of candidates cost."""
    candidates: list[int]
    seconds: dict[str, float]
    cost_usd: float
    calls: int


class KeptInput(Record):
    variant: str
    changes: str


class Inputs(Record):
    """The variants of setup() every candidate is held to (loop/unseen.py)."""
    kept: list[KeptInput]
    note: str | None = None


class Summary(Record):
    """A run's summary.json. The header is written when the run starts; the rest as the run gets there."""
    format_version: int
    status: str
    run_id: str
    repo: str
    branch: str | None  # None once a branch without accepted commits is dropped
    base_commit: str
    workload: str
    workload_file: str | None
    model: str
    settings: dict  # config.Settings as dumped at the start (the reviewer may change the limits)
    isolation: str
    machine: Machine
    baseline: Baseline | None
    candidates: list[Candidate]
    final: Final | None
    llm: Llm | None
    inputs: Inputs | None = None
    tests: Tests | None = None
    rounds: list[Round] | None = None
    stop_reason: str | None = None
    error: str | None = None
    accepted: int | None = None
    elapsed_s: float | None = None
    final_commit: str | None = None
    tests_run: list[str] | None = None

    @classmethod
    def read(cls, data: dict, source: Path | str) -> "Summary":
        """The record in `data` (summary.json as loaded from `source`): refused (RecordError) when it is of another
        format_version, whose fields may mean something else, or does not fit the model."""
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            made = "no format_version (written before perfagent recorded one)" if version is None else \
                f"format_version {version}"
            raise RecordError(f"{source} has {made}; this perfagent reads format_version {FORMAT_VERSION}: render it "
                              f"with the perfagent that made the run, or run it again")
        return cls.written(data, source)

    @classmethod
    def written(cls, data: dict, source: Path | str) -> "Summary":
        """`data` validated as a record (RecordError naming each field that does not fit)."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg'].lower()}" for e in exc.errors()[:5])
            raise RecordError(f"{source} is not a run record of format_version {FORMAT_VERSION}: {problems}") \
                from None

    def dump(self) -> dict:
        """As written to disk: the fields the run has set, in JSON's types."""
        return self.model_dump(mode="json", exclude_unset=True)

    @property
    def kept(self) -> list[Candidate]:
        """The candidates whose commits are on the branch, oldest first."""
        return [c for c in self.candidates if c.kept]
