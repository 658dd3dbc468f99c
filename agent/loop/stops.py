"""How a run ends before its candidates run out: one exception per reason, each carrying the reason the record
states and the status the run ends with. The loop raises or translates them; `Optimizer.run` catches `Stop` once."""
from __future__ import annotations

from perfagent.model.llm import BudgetExceeded, ModelError, ScriptExhausted
from perfagent.reasons import FINISHED, MODEL_FAILED


class Stop(Exception):
    status = FINISHED

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class IterationLimit(Stop):
    def __init__(self):
        super().__init__("iteration limit reached")


class OutOfPatience(Stop):
    def __init__(self, patience: int):
        super().__init__(f"{patience} candidates in a row were rejected")


class Quit(Stop):
    """The reviewer ends the run: what is committed stays on the branch, and the run ends as usual."""

    def __init__(self):
        super().__init__("quit by the reviewer")


class ModelDone(Stop):
    """The model has nothing more to give within the run's limits: a recorded session ran out, or the budget."""


class ModelFailed(Stop):
    status = MODEL_FAILED


def stop_for(exc: Exception) -> Stop | None:
    """The stop a model-layer exception means for the run, or None when it is not one."""
    if isinstance(exc, ScriptExhausted):
        return ModelDone(f"the model has no more replies ({exc})")
    if isinstance(exc, BudgetExceeded):
        return ModelDone(f"budget spent ({exc})")
    if isinstance(exc, ModelError):
        return ModelFailed(f"model error: {exc}")
    return None
