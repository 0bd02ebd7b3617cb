"""Scheduler pieces on top of MONAI's: the x0 a network output implies, the learned reverse-process variance and
its variational bound, and a DDIM step consistent with its clipped x0."""

from monai_ext.schedulers.ddim import ConsistentDDIMScheduler
from monai_ext.schedulers.learned_variance import (
    LearnedVarianceDDPMScheduler,
    discretized_gaussian_log_likelihood,
    gaussian_kl,
)
from monai_ext.schedulers.prediction import PREDICTION_TYPES, model_output_for, predicted_x0, prediction_kind

__all__ = [
    "PREDICTION_TYPES",
    "ConsistentDDIMScheduler",
    "LearnedVarianceDDPMScheduler",
    "discretized_gaussian_log_likelihood",
    "gaussian_kl",
    "model_output_for",
    "predicted_x0",
    "prediction_kind",
]
