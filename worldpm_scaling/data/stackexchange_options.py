"""What a StackExchange conversion takes and gives: its options, its summary, its errors, its columns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


class StackExchangeError(ValueError):
    """A dump that is missing, malformed (names file:line) or an output that already exists."""


class NoPairsError(StackExchangeError):
    """A dump that gives no pair at all (wrong file, or filters that drop everything); nothing is written."""


@dataclass(frozen=True, kw_only=True)
class ConvertOptions:
    accepted_bonus: int = 1
    """Added to the accepted answer's vote score before ranking (0 = votes only)."""
    min_gap: int = 1
    """Smallest net-score difference that makes a pair (1 = any difference; equal scores never pair)."""
    max_pairs_per_question: int | None = None
    """Keep at most this many pairs per question, largest score gaps first (None = all)."""
    max_chars: int = 20_000
    """Posts whose HTML body is longer are dropped as over-long."""
    min_chars: int = 1
    """Posts whose markdown text is shorter are dropped as empty."""
    test_frac: float = 0.01
    """Share of questions (by hash of id) written to the test split."""
    site: str | None = None
    """Site name for the `site` column; None = taken from the dump's file or folder name."""
    format: str = "parquet"
    """Output format: parquet or jsonl."""
    bucket_bytes: int = 32 << 20
    """Target size of one scan bucket; bounds the memory of the pair phase."""
    batch_rows: int = 8192

    def __post_init__(self) -> None:
        if self.min_gap < 1:
            raise StackExchangeError("min_gap must be ≥ 1 (equal scores never make a pair)")
        if self.max_pairs_per_question is not None and self.max_pairs_per_question < 1:
            raise StackExchangeError("max_pairs_per_question must be ≥ 1")
        if not 0 <= self.test_frac < 1:
            raise StackExchangeError("test_frac must be within [0, 1)")
        if self.format not in ("parquet", "jsonl"):
            raise StackExchangeError(f"format must be parquet or jsonl, not {self.format!r}")


@dataclass
class ConvertSummary:
    posts_read: int = 0
    questions: int = 0
    answers: int = 0
    pairs_train: int = 0
    pairs_test: int = 0
    questions_train: int = 0
    questions_test: int = 0
    filtered: dict[str, int] = field(
        default_factory=lambda: {
            "empty": 0,
            "deleted": 0,
            "too_long": 0,
            "orphan_answer": 0,
            "other_post_type": 0,
            "questions_without_pair": 0,
        }
    )
    seconds: float = 0.0
    dump: str = ""
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def posts_per_s(self) -> float:
        return self.posts_read / self.seconds if self.seconds > 0 else float("nan")

    def to_dict(self) -> dict:
        return {**asdict(self), "pairs": self.pairs_train + self.pairs_test, "posts_per_s": self.posts_per_s}


# Output columns, in order (the pair schema, text level).
COLUMNS = (
    "prompt",
    "chosen",
    "rejected",
    "chosen_score",
    "rejected_score",
    "question_id",
    "site",
    "chosen_id",
    "rejected_id",
    "chosen_accepted",
    "rejected_accepted",
    "question_created",
    "chosen_created",
    "rejected_created",
    "chosen_markdown",
    "rejected_markdown",
    "prompt_chars",
    "chosen_chars",
    "rejected_chars",
    "question_score",
    "title",
)
