"""Named analysis errors (the CLI turns them into `error: …`, exit 2)."""


class AnalysisInputError(ValueError):
    """Input that cannot be analysed: empty, NaN, non-positive, too few points, unknown column."""


class FitError(ValueError):
    """A fit that did not converge."""
