"""Test tiers: tests/unit (pure, fast), tests/integration (real servers), tests/e2e (the demo).

Each tier is also a marker (`-m unit`, `-m integration`, `-m e2e`), applied here from the folder so
no test can sit in a tier without its marker. Shared fixtures live in tests/fixtures/*.py and are
loaded as plugins.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_FIXTURES = Path(__file__).parent / "fixtures"
pytest_plugins = [f"tests.fixtures.{p.stem}" for p in sorted(_FIXTURES.glob("*.py")) if p.stem != "__init__"]

REPO = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        tier = Path(str(item.fspath)).relative_to(REPO / "tests").parts[0]
        if tier in ("unit", "integration", "e2e"):
            item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture
def repo() -> Path:
    """The repository root (sweeps/, slurm/ …)."""
    return REPO
