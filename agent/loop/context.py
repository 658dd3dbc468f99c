"""What every phase of one run shares: its settings, where code runs, the reviewer, the observers and the model
session. The optimizer builds it once and hands it to each phase."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from perfagent.config import Settings
from perfagent.events import Broadcast
from perfagent.loop.environment import Environment
from perfagent.loop.review import ReviewDesk
from perfagent.measure.workload import Workload
from perfagent.model.llm import Session


@dataclass
class RunContext:
    run_id: str
    settings: Settings
    workload: Workload
    env: Environment
    desk: ReviewDesk
    notify: Broadcast
    session: Session
    started: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started
