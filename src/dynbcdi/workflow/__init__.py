"""`dynbcdi run`: prepare → kinematic phasing → grid → dynamical reconstruction → analysis → report.

Each stage keeps its result in the run folder and is reused while its settings and inputs are
unchanged (:mod:`dynbcdi.workflow.cache`); the settings come from one TOML file
(:mod:`dynbcdi.workflow.config`); the HTML report is :mod:`dynbcdi.workflow.report`.
"""

from dynbcdi.workflow.cache import PlannedStage, Stage, StageContext, StageRecord, execute, plan
from dynbcdi.workflow.config import (OutputSettings, PhasingSettings, ReconstructionSettings, RunConfig,
                                     load_run_config, run_config_from_dict)
from dynbcdi.workflow.runner import RunSummary, default_stages, plan_run, run_workflow

__all__ = ["OutputSettings", "PhasingSettings", "PlannedStage", "ReconstructionSettings", "RunConfig", "RunSummary",
           "Stage", "StageContext", "StageRecord", "default_stages", "execute", "load_run_config", "plan", "plan_run",
           "run_config_from_dict", "run_workflow"]
