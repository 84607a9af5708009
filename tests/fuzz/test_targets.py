"""A short run of every fuzz target, seeded so a failure replays (`make fuzz` runs
them for longer, coverage-guided)."""

from __future__ import annotations

import pytest

from .runner import run_plain
from .targets import TARGETS

ITERATIONS = {"virtual-modem": 300}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_target_survives_mutated_input(name):
    run_plain(TARGETS[name], iterations=ITERATIONS.get(name, 1500), seed=1)  # raises on a finding


def test_a_finding_is_reported_with_its_input(tmp_path, monkeypatch):
    from . import runner
    from .targets import Target

    def explode(data: bytes) -> None:
        if len(data) > 3:
            raise KeyError("untyped")

    monkeypatch.setattr(runner, "FINDINGS", tmp_path)
    with pytest.raises(AssertionError, match="KeyError") as info:
        run_plain(Target("boom", explode, (ValueError,), (b"abcd",)), iterations=5)
    assert "input saved as" in str(info.value) and list(tmp_path.iterdir())
