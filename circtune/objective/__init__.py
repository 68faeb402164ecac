"""The work of one search trial, usable without Ray: config, data, joint training and scoring."""

from circtune.objective.config import TrialConfig
from circtune.objective.data import OracleFloor, TensorData, TrialData, prepare_trial_data, to_device
from circtune.objective.run import SavedModel, TrialResult, load_model, run_trial, save_model
from circtune.objective.score import SizeScore, TrialScore, evaluate_test, score_validation
from circtune.objective.train import EpochMetrics, JointTrainer, NonFiniteLossError

__all__ = [
    "EpochMetrics",
    "JointTrainer",
    "NonFiniteLossError",
    "OracleFloor",
    "SavedModel",
    "SizeScore",
    "TensorData",
    "TrialConfig",
    "TrialData",
    "TrialResult",
    "TrialScore",
    "evaluate_test",
    "load_model",
    "prepare_trial_data",
    "run_trial",
    "save_model",
    "score_validation",
    "to_device",
]
