"""Why a candidate was accepted or rejected, and why a run stopped: the vocabulary of a run's record, shared by the
loop that decides and by everything that reads the record (the CLI, the reports, the reviewer, batch)."""

# Verdict reasons, in the order the checks run.
ACCEPTED = "accepted"
NO_EDIT = "no edit"
EDIT_FAILED = "edit did not apply"
REVIEWER_REJECTED = "rejected by the reviewer"
NOT_VALIDATED = "not validated"  # the run stopped (the reviewer quit, an interrupt, an error) first
PROTECTED_FILE = "edits a protected file"
SUSPICIOUS_CODE = "games the benchmark"
UNSAFE_CODE = "unsafe code"
SYNTAX_ERROR = "syntax error"
BUILD_FAILED = "build failed"
UNSAFE_BEHAVIOUR = "unsafe behaviour"
TESTS_FAILED = "tests failed"
TESTS_TAMPERED = "tests tampered"  # the test run misreported its canary, or tests pass only by a change they never run
WORKLOAD_FAILED = "workload failed"
RESULT_CHANGED = "result changed"
TIMING_TAMPERED = "timing tampered"  # the run's account of its calls does not hold against the kernel's
WORK_MOVED = "work moved outside workload()"  # the time saved in the calls reappears outside them
CARRIED_ACROSS_CALLS = "gain comes from caching results across calls"  # first calls in a process do not gain
ONLY_ON_BENCHMARK_INPUT = "speedup only on the benchmark's input"  # none on a variant of setup() (loop/unseen.py)
USES_TOO_MUCH_MEMORY = "uses too much memory"  # its peak per call grew beyond max-memory-growth
NO_LESS_MEMORY = "no less memory"  # objective memory: its peak is not lower by min-effect
SLOWER = "slower"  # objective memory: less memory, but its time got worse by more than min-effect
NOT_RUN_BY_WORKLOAD = "not run by the workload"  # it edits only functions neither profiled nor called: not timed
NOT_FASTER = "not faster"
TOO_NOISY = "too noisy to decide"
OUTRUN = "outrun in its round"  # significantly faster, but another candidate of its round was faster still
UNDONE = "accepted, then undone by the reviewer"

# Result checks.
IDENTICAL = "identical"
NOT_COMPARED = "not compared (compare-output = false)"

# A run's status when it ends.
RUNNING, FINISHED, FAILED, INTERRUPTED, KILLED = "running", "finished", "failed", "interrupted", "killed"
MODEL_FAILED = "model failed"  # it ended because the model could not answer
SKIPPED = "skipped"  # batch: a task whose repository does not build here (its row says the build's first error)


def outcome(reason: str | None, outrun_by: int | None = None, undone: bool = False) -> str:
    """What became of a candidate: its verdict's reason as the judge made it, unless another candidate of its round
    gained more and was committed instead (the round's choice, not a change of the verdict) or a reviewer undid it."""
    if reason is None:
        return "no verdict"
    return UNDONE if undone else OUTRUN if outrun_by is not None else reason
