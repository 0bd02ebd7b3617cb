"""Engine pieces: prepare-batch callables, trainers for label-free losses, model-selection handlers, writers."""

try:  # pytorch-ignite >= 0.5
    from ignite.handlers import ProgressBar
except ImportError:  # pytorch-ignite 0.4.x, pinned by monai[ignite] 1.5.x
    from ignite.contrib.handlers import ProgressBar

from monai_ext.engines.cuts_report import CUTSReport, cuts_table
from monai_ext.engines.discovery import DiscoveryTrainer, discovery_metrics, volume_keys
from monai_ext.engines.discovery_report import discovery_report
from monai_ext.engines.ensemble_report import EnsembleReport, ensemble_table, slice_scores
from monai_ext.engines.handlers import (
    BestPerLevel,
    MeanMaxProbability,
    ResumeFromLatest,
    SaveForResume,
    denoising_metrics,
    latest_checkpoint,
    write_metrics,
)
from monai_ext.engines.objective_selection import (
    ValidationObjective,
    selection_higher_is_better,
    selection_metric_names,
)
from monai_ext.engines.prepare_batch import (
    MaskDiffusionPrepareBatch,
    SamplePredictionPrepareBatch,
    SelfSupervisedPrepareBatch,
)
from monai_ext.engines.writers import (
    DiscoveryFigureWriter,
    EnsembleWriter,
    HierarchyWriter,
    LevelsWriter,
    MapsWriter,
    PerItemWriter,
)

__all__ = [
    "BestPerLevel",
    "CUTSReport",
    "DiscoveryFigureWriter",
    "DiscoveryTrainer",
    "EnsembleReport",
    "EnsembleWriter",
    "HierarchyWriter",
    "LevelsWriter",
    "MapsWriter",
    "MaskDiffusionPrepareBatch",
    "MeanMaxProbability",
    "PerItemWriter",
    "ProgressBar",
    "ResumeFromLatest",
    "SamplePredictionPrepareBatch",
    "SaveForResume",
    "SelfSupervisedPrepareBatch",
    "ValidationObjective",
    "cuts_table",
    "denoising_metrics",
    "discovery_metrics",
    "discovery_report",
    "ensemble_table",
    "latest_checkpoint",
    "selection_higher_is_better",
    "selection_metric_names",
    "slice_scores",
    "volume_keys",
    "write_metrics",
]
