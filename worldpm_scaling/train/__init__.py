"""Training: a Bradley–Terry reward model per RunSpec, on a CPU or GPUs, logged through a Tracker run.

Public API (launch/cell.py's `run_cell`, which `wps train` and every launched job call, uses this):
    Trainer(run, tracker_run, *, device=None).fit() -> TrainResult   # resumes from run.out_dir/checkpoints
    Trainer.checkpoint_now() -> Path | None   # signal-safe;   Trainer.request_stop()
Errors: NonFiniteLossError (names the step), CheckpointCorruptError (names the file).
"""

from .checkpoint import CheckpointCorruptError
from .collate import MODES, Batch, CollationError, collate
from .deepspeed_config import DeepSpeedConfigError, deepspeed_config
from .deepspeed_config import validate as validate_deepspeed_config
from .evaluation import EvalData
from .loop import DataTooSmallError, Trainer
from .schedule import lr_at
from .state import TrainResult, TrainState
from .step_metrics import NonFiniteLossError

__all__ = [
    "Trainer",
    "TrainResult",
    "TrainState",
    "NonFiniteLossError",
    "CheckpointCorruptError",
    "DataTooSmallError",
    "EvalData",
    "lr_at",
    "collate",
    "Batch",
    "MODES",
    "CollationError",
    "deepspeed_config",
    "validate_deepspeed_config",
    "DeepSpeedConfigError",
]
