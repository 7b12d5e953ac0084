"""Named points where a test can make a run's process die as if it had been killed (SIGKILL).

The reliability tests set `CT_PIPELINE_CRASH_AT` to one of `CRASH_POINTS` in the environment of
a `dagster job execute` process; when the run reaches that point the process kills itself, with
no chance to clean up, exactly where a power cut or the OOM killer could strike. That puts the
kill at a chosen line instead of racing a timer. Unset, as in every real deployment,
`crash_point` does nothing.
"""

import os
import signal

ENV_VAR = "CT_PIPELINE_CRASH_AT"
CRASH_POINTS = (
    # deal_stage_events committed the outbox rows and the new stage snapshot; nothing sent yet.
    "after_stage_snapshot",
    # CleverTap answered a profile batch; its outcomes are written but not committed.
    "profile_bookkeeping",
    # CleverTap answered an event batch; its outcomes are written but not committed.
    "event_bookkeeping",
    # CleverTap answered a batch of campaign triggers; their outcomes are written but not
    # committed.
    "trigger_bookkeeping",
)


def crash_point(name: str) -> None:
    """Kill this process with SIGKILL if `CT_PIPELINE_CRASH_AT` names this point."""
    if os.environ.get(ENV_VAR) == name:
        os.kill(os.getpid(), signal.SIGKILL)
