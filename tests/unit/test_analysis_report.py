import numpy as np
import pandas as pd
import pytest

from tests.analysis_synth import sweep_frame
from worldpm_scaling import names
from worldpm_scaling.analysis import AnalysisInputError
from worldpm_scaling.analysis.fits import ChinchillaFit
from worldpm_scaling.analysis.load import COLUMNS, from_file, tidy
from worldpm_scaling.analysis.report import analyze, joint_caveat

pytestmark = pytest.mark.unit


def test_empty_frame_is_named_error(tmp_path):
    with pytest.raises(AnalysisInputError, match="empty"):
        analyze(sweep_frame().iloc[:0], tmp_path)


def test_tidy_joins_pairs_tokens_and_compute_by_step():
    runs = [{"run_id": "r", "sweep": "sw", "cell": "c0", "model": "tiny-xs", "N": 1000.0}]
    h = {"r": {names.TRAIN_PAIRS_SEEN: [(1, 64.0), (2, 128.0)], names.TRAIN_TOKENS_SEEN: [(1, 6400.0), (2, 12800.0)],
               names.eval_loss("adversarial"): [(2, 0.6)], names.TRAIN_LOSS: [(1, 0.7), (3, 0.5)]}}
    df = tidy(runs, h)
    assert list(df.columns) == COLUMNS
    ev = df[df.metric == names.eval_loss("adversarial")].iloc[0]
    assert (ev.pairs, ev.tokens, ev.compute) == (128.0, 12800.0, 6 * 1000.0 * 12800.0)
    late = df[(df.metric == names.TRAIN_LOSS) & (df.step == 3)].iloc[0]
    assert np.isnan(late.pairs)  # a step without a pairs_seen point stays unknown, not guessed
    assert tidy([], {}).empty


def test_from_file_names_missing_columns(tmp_path):
    p = tmp_path / "x.csv"
    pd.DataFrame({"sweep": ["s"], "value": [1.0]}).to_csv(p, index=False)
    with pytest.raises(AnalysisInputError, match="missing columns"):
        from_file(p)
    with pytest.raises(AnalysisInputError, match="no such file"):
        from_file(tmp_path / "nope.parquet")


def test_joint_caveat_flags_terms_that_do_not_move_the_loss():
    N = np.repeat([1e5, 1e6, 1e7], 4)
    D = np.tile([1e6, 1e7, 1e8, 1e9], 3)
    real = ChinchillaFit(E=0.3, A=5.0, B=20.0, alpha=0.2, beta=0.25, n=12)
    assert joint_caveat(real, N, D, real.predict(N, D)) == ""
    flat = ChinchillaFit(E=0.69, A=1e4, B=1.0, alpha=2.4, beta=0.7, n=12)
    note = joint_caveat(flat, N, D, np.full(12, 0.69))
    assert "alpha not identified" in note and "beta not identified" in note
    pinned = ChinchillaFit(E=0.3, A=5.0, B=20.0, alpha=5.0, beta=0.25, n=12)
    assert "alpha at its bound" in joint_caveat(pinned, N, D, real.predict(N, D))
