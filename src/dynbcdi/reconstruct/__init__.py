"""Dynamical reconstruction by automatic differentiation (paper Eq. 4, Fig. 1c, Methods).

``reconstruct(intensity, valid, dq, model, init, config)`` optimises the crystal function
S = s·e^{iφ} on the grid frame with any :class:`dynbcdi.forward.base.ForwardModel` in the loop.
"""

from dynbcdi.reconstruct.config import (LossConfig, OptimizerConfig, ReconstructionConfig,
                                        ShrinkWrapConfig, StoppingConfig, config_from_dict,
                                        load_config)
from dynbcdi.reconstruct.loss import amplitude_loss, atv, poisson_loss
from dynbcdi.reconstruct.optimizer import EpochRecord, History, ReconstructionResult, reconstruct
from dynbcdi.reconstruct.parameters import (CrystalParameters, start_from_kinematic, start_losses,
                                            twin_object, unwrapped_phase)

__all__ = [
    "CrystalParameters", "EpochRecord", "History", "LossConfig", "OptimizerConfig",
    "ReconstructionConfig", "ReconstructionResult", "ShrinkWrapConfig", "StoppingConfig",
    "amplitude_loss", "atv", "config_from_dict", "load_config", "poisson_loss", "reconstruct",
    "start_from_kinematic", "start_losses", "twin_object", "unwrapped_phase",
]
