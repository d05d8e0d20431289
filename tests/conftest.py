"""Shared fixtures: each committed stack evaluated once under recording mocks."""

from __future__ import annotations

import pytest

from tools.mockrun import Run, evaluate


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
