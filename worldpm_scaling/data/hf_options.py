"""What a Hugging Face dataset import takes and gives: its schemas, column maps, options, summary, error."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

SCHEMAS = ("pairs", "h4-stack-exchange", "ratings")

DEFAULT_COLUMNS = {
    "pairs": {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"},
    "h4-stack-exchange": {"qid": "qid", "question": "question", "answers": "answers", "title": "title"},
    "ratings": {"prompt": "prompt", "response": "response"},
}
OPTIONAL = {"pairs": {"prompt"}, "h4-stack-exchange": {"title"}, "ratings": set()}
"""Fields that may be absent from the dataset (pairs: the prompt when chosen/rejected are conversations)."""


class HFImportError(ValueError):
    """A dataset that cannot be read, a column map that does not fit it (lists the columns found), or an
    output in the way."""


@dataclass(frozen=True, kw_only=True)
class ImportOptions:
    schema: str = "pairs"
    """pairs | h4-stack-exchange | ratings."""
    columns: dict = field(default_factory=dict)
    """Schema field → dataset column, over the schema's defaults (DEFAULT_COLUMNS)."""
    split: str | None = None
    """Split of a DatasetDict or of a hub snapshot folder (None: `train`, or the only one)."""
    attribute: str = "helpfulness"
    """ratings: the attribute that orders two responses to a prompt."""
    min_rating_gap: float = 1.0
    """ratings: smallest rating difference that makes a pair."""
    accepted_bonus: int = 1
    """h4-stack-exchange: added to the selected answer's score (as `wps data stackexchange`)."""
    min_gap: int = 1
    """h4-stack-exchange: smallest net-score difference that makes a pair."""
    max_pairs_per_question: int | None = None
    max_chars: int = 20_000
    """h4-stack-exchange: answers/questions with longer HTML are dropped (as `wps data stackexchange`)."""
    min_chars: int = 1
    test_frac: float = 0.0
    """Share of prompts (questions) in the test split, by a hash of the question id (h4, the same split as
    `wps data stackexchange`) or of the prompt text; 0 = everything in train."""
    format: str = "parquet"

    def __post_init__(self) -> None:
        if self.schema not in SCHEMAS:
            raise HFImportError(f"schema must be one of {', '.join(SCHEMAS)}, got {self.schema!r}")
        unknown = (
            set(self.columns)
            - set(DEFAULT_COLUMNS[self.schema])
            - ({"attribute"} if self.schema == "ratings" else set())
        )
        if unknown:
            raise HFImportError(
                f"column map: {sorted(unknown)} are not fields of the {self.schema} schema "
                f"(fields: {', '.join(DEFAULT_COLUMNS[self.schema])})"
            )
        if not 0 <= self.test_frac < 1:
            raise HFImportError("test_frac must be within [0, 1)")
        if self.format not in ("parquet", "jsonl"):
            raise HFImportError(f"format must be parquet or jsonl, not {self.format!r}")
        if self.min_gap < 1:
            raise HFImportError("min_gap must be ≥ 1 (equal scores never make a pair)")
        if self.min_rating_gap <= 0:
            raise HFImportError("min_rating_gap must be > 0 (equal ratings never make a pair)")


@dataclass
class ImportSummary:
    source: str = ""
    schema: str = ""
    rows: int = 0
    pairs_train: int = 0
    pairs_test: int = 0
    bad_rows: dict = field(default_factory=dict)
    """reason → rows skipped."""
    examples: list = field(default_factory=list)
    """The first bad rows, named (`row 12: field 'chosen' is null`)."""
    no_pair: int = 0
    """Rows (pairs schema) or prompts/questions (others) that gave no pair: ties, one response."""
    seconds: float = 0.0
    outputs: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {**asdict(self), "pairs": self.pairs_train + self.pairs_test}
