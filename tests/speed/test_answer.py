"""The bank answers on the first ring unless told to wait for caller ID (issue 18)."""

from __future__ import annotations

import pytest

from receiver.config import parse_centre_config
from tests.bankworld import bank_world


@pytest.mark.parametrize(
    ("wait", "cid_first", "rings", "caller"),
    [
        (False, False, 1, None),  # caller ID would come after the first ring: not waited for
        (False, True, 1, "5550001"),  # it came before the first ring: recorded
        (True, False, 1, "5550001"),  # the option: wait past the first ring for caller ID
    ],
)
async def test_answer_ring_and_caller_id(tmp_path, wait, cid_first, rings, caller):
    answered: list[dict[str, object]] = []

    def notify(what: str, **fields: object) -> None:
        if what == "answered":
            answered.append(fields)

    bank_profile = "conexant" if cid_first else "usr"
    async with bank_world(tmp_path, bank_profile=bank_profile) as world:
        bank = world.bank(notify=notify, wait_for_caller_id=wait)
        async with world.serving(bank, stop_within=10):
            report = await world.line_test()
            assert report.result == "ok", report
            assert [a["rings"] for a in answered] == [rings]
            calls = world.store.calls()
            assert [c.caller_id for c in calls] == [caller]


def test_the_option_in_the_config(tmp_path):
    base = {"centre": {"key": "k", "store": "s"}, "bank": {"ports": ["/dev/ttyS0"]}}
    assert parse_centre_config(base, tmp_path / "c.toml").wait_for_caller_id is False
    base["bank"]["wait_for_caller_id"] = True
    assert parse_centre_config(base, tmp_path / "c.toml").wait_for_caller_id is True
