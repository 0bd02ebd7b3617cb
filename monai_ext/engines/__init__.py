"""Engine pieces: prepare-batch callables, trainers for label-free losses, model-selection handlers."""

from monai_ext.engines.discovery import DiscoveryTrainer, discovery_metrics, volume_keys
from monai_ext.engines.handlers import (
    BestPerLevel,
    MeanMaxProbability,
    ResumeFromLatest,
    SaveForResume,
    latest_checkpoint,
)
from monai_ext.engines.prepare_batch import SamplePredictionPrepareBatch
from monai_ext.engines.report import discovery_report

__all__ = [
    "BestPerLevel",
    "DiscoveryTrainer",
    "MeanMaxProbability",
    "ResumeFromLatest",
    "SamplePredictionPrepareBatch",
    "SaveForResume",
    "discovery_metrics",
    "discovery_report",
    "latest_checkpoint",
    "volume_keys",
]
