"""The suite's own machinery: under xdist (./dev test) every test carries its group in its node id,
so the modules that share an expensive session fixture run on one worker (tests/conftest.py). With
pytest 9.2 and xdist 3.8 the group silently did not apply (pytest keeps node ids elsewhere) and both
workers built the whole-pipeline lake."""

from __future__ import annotations

import os

import pytest


def test_xdist_groups_reach_the_scheduler(request: pytest.FixtureRequest) -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return  # one process (OMICSLAKE_TEST_WORKERS=0): no groups to check
    assert request.node.nodeid.endswith("@test_suite_setup"), request.node.nodeid
