"""OffsetBias's test benchmark EvalBiasBench (ncsoft/offsetbias `data/evalbiasbench/biasbench.json`):
a JSON object {bias type: [{bias, instruction, response1, response2, label}]}, label 1 or 2 naming
the better response (the repository's run_bench.py reads it so). A JSON array of the same records,
or the OffsetBias data's field names (input/instruction, output_1, output_2, label), read the same.
One pair per record: the labelled response chosen.
"""

from __future__ import annotations

from typing import Iterable

from .common import EvalImportError, Result, Row


def _field(row: Row, *names: str) -> str:
    for n in names:
        if n in row.data:
            return row.text(n)
    raise EvalImportError(f"{row.where}: missing field {names[0]!r}")


def pairs(rows: Iterable[Row]) -> Result:
    res = Result()
    for i, row in enumerate(rows):
        bias = row.get("bias", str, optional=True) or "unlabelled"
        rid = f"{bias}/{i}"
        instruction = _field(row, "instruction", "input")
        r1, r2 = _field(row, "response1", "output_1"), _field(row, "response2", "output_2")
        label = row.get("label", int)
        if label not in (1, 2):
            raise EvalImportError(f"{row.where}: field 'label' must be 1 or 2, got {label}")
        if r1 == r2:
            res.skip("response1 and response2 identical", rid)
            continue
        chosen, rejected = (r1, r2) if label == 1 else (r2, r1)
        res.add(instruction, chosen, rejected, group=rid)
    return res
