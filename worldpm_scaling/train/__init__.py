"""Training: a Bradley–Terry reward model per RunSpec, on a CPU or GPUs, logged through a Tracker run.

Public API (the launcher calls exactly this):
    Trainer(run, tracker_run, *, device=None).fit() -> TrainResult   # resumes from run.out_dir/checkpoints
    Trainer.checkpoint_now() -> Path | None   # signal-safe;   Trainer.request_stop()
    train_cell(run, tracker_run) -> TrainResult
Errors: NonFiniteLossError (names the step), CheckpointCorruptError (names the file).
"""

from .checkpoint import CheckpointCorruptError
from .collate import MODES, Batch, CollationError, collate
from .deepspeed_config import DeepSpeedConfigError, deepspeed_config
from .deepspeed_config import validate as validate_deepspeed_config
from .loop import DataTooSmallError, EvalData, NonFiniteLossError, Trainer, TrainResult
from .schedule import lr_at


def train_cell(run, tracker_run, **kw) -> TrainResult:
    """Train one cell to its budget (resuming if a checkpoint exists) and return how it ended."""
    return Trainer(run, tracker_run, **kw).fit()


__all__ = ["Trainer", "TrainResult", "train_cell", "NonFiniteLossError", "CheckpointCorruptError",
           "DataTooSmallError", "EvalData", "lr_at", "collate", "Batch", "MODES", "CollationError",
           "deepspeed_config", "validate_deepspeed_config", "DeepSpeedConfigError"]
