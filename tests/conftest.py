"""Shared fixtures: each committed stack evaluated once under recording mocks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import Run, evaluate  # noqa: E402


@pytest.fixture(scope="session")
def primary() -> Run:
    run = evaluate("primary")
    assert run.error is None, run.error
    return run


@pytest.fixture(scope="session")
def secondary() -> Run:
    run = evaluate("secondary")
    assert run.error is None, run.error
    return run
