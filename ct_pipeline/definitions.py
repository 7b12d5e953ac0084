"""The ct_pipeline code location: the one Definitions object Dagster loads."""

import dagster as dg

from ct_pipeline.assets import ALL_ASSETS
from ct_pipeline.assets.writeback import WRITEBACK_ASSETS, WRITEBACK_CHECKS, WRITEBACK_JOBS
from ct_pipeline.checks import CHECKS
from ct_pipeline.jobs import SYNC_JOBS
from ct_pipeline.resources import environment_resources
from ct_pipeline.schedules import AUTOMATION_CHECKS, SCHEDULES
from ct_pipeline.sensors import SENSORS


def build_definitions() -> dg.Definitions:
    """The code location's definitions, with resources read from the environment now."""
    return dg.Definitions(
        assets=[*ALL_ASSETS, *WRITEBACK_ASSETS],
        asset_checks=[*CHECKS, *AUTOMATION_CHECKS, *WRITEBACK_CHECKS],
        jobs=[*SYNC_JOBS, *WRITEBACK_JOBS],
        schedules=SCHEDULES,
        sensors=SENSORS,
        resources=environment_resources(),
    )


defs = build_definitions()
