"""Whether the machine is loaded now: other work on its cores makes every timing value slower and noisier, so runs
take longer and small gains end 'too noisy'. Two signs, either enough: the load average above the machine's cores,
or the baseline's A/A pairs far noisier than on a quiet machine of this kind."""
from __future__ import annotations

import os

# Timing noise (stats.Noise.pair_spread) of 1 s values measured on a quiet 2-core machine: 2.4-3.0% in three runs;
# with other work on the cores, 8-36% in twenty.
QUIET_SPREAD = 0.03
LOADED_SPREAD = 0.10


def loaded_note(pair_spread: float | None = None, load: float | None = None, cores: int | None = None) -> str | None:
    """The warning to give when the machine is loaded, or None. `load` (the 1-minute load average) and `cores` (the
    machine's, which the load average counts) default to this machine's now; `pair_spread` is the baseline's timing
    noise, when it was measured just now."""
    load = os.getloadavg()[0] if load is None else load
    cores = cores or os.cpu_count() or 1
    noisy = pair_spread is not None and pair_spread > LOADED_SPREAD
    if load <= cores and not noisy:
        return None
    noise = (f"; timing noise {pair_spread:.0%}, about {QUIET_SPREAD:.0%} on a quiet machine"
             if pair_spread is not None else "")
    return (f"the machine is loaded (load {load:.1f} on {cores} cores{noise}): timing takes longer and small gains "
            f"may end 'too noisy'")
