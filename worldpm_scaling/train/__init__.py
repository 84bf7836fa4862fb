"""Training: a Bradley–Terry reward model per RunSpec, on a CPU or GPUs, logged through a Tracker run.

Public API (the launcher calls exactly this):
    Trainer(run, tracker_run).fit() -> TrainResult   # resumes from run.out_dir/checkpoints
    Trainer.checkpoint_now()  # signal-safe    Trainer.request_stop()
    train_cell(run, tracker_run) -> TrainResult
"""

from .checkpoint import CheckpointCorruptError
from .loop import DataTooSmallError, EvalData, NonFiniteLossError, Trainer, TrainResult, lr_at


def train_cell(run, tracker_run, **kw) -> TrainResult:
    return Trainer(run, tracker_run, **kw).fit()


__all__ = ["Trainer", "TrainResult", "train_cell", "NonFiniteLossError", "CheckpointCorruptError",
           "DataTooSmallError", "EvalData", "lr_at"]
