"""Dynamical reconstruction by automatic differentiation (paper Eq. 4, Fig. 1c, Methods).

``reconstruct(intensity, valid, dq, model, init, config)`` optimises the crystal function
S = s·e^{iφ} on the grid frame with any :class:`dynbcdi.forward.base.ForwardModel` in the loop.
"""

from dynbcdi.reconstruct.config import (LossConfig, OptimizerConfig, ReconstructionConfig, ShrinkWrapConfig,
                                        StoppingConfig, TermConfig, TermsConfig, config_from_dict, load_config)
from dynbcdi.reconstruct.evaluate import FitStatistics, fit_statistics
from dynbcdi.reconstruct.loss import amplitude_loss, atv, poisson_loss
from dynbcdi.reconstruct.optimizer import EpochRecord, History, ReconstructionResult, reconstruct
from dynbcdi.reconstruct.parameters import CrystalParameters, unwrapped_phase
from dynbcdi.reconstruct.pipeline import (PipelineResult, StartConfig, choose_start, default_config, rocking_step_rad,
                                          dynamical_from_kinematic, kinematic_on_grid, run_pipeline, start_object,
                                          interior_level_support)

__all__ = [
    "CrystalParameters", "EpochRecord", "FitStatistics", "TermConfig", "TermsConfig", "fit_statistics", "History", "LossConfig", "OptimizerConfig", "PipelineResult",
    "ReconstructionConfig", "ReconstructionResult", "ShrinkWrapConfig", "StartConfig", "StoppingConfig",
    "amplitude_loss", "atv", "choose_start", "config_from_dict", "default_config", "dynamical_from_kinematic",
    "kinematic_on_grid", "load_config", "poisson_loss", "reconstruct", "run_pipeline",
    "interior_level_support", "rocking_step_rad", "start_object", "unwrapped_phase",
]
