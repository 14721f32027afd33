"""Cron expressions: what fires when (UTC), and one-line errors for what is not cron."""

from datetime import UTC, datetime

import pytest
from berth.core.cron import CronError, cron_parse


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("*/15 * * * *", "2026-12-04 20:07:30", "2026-12-04 20:15:00"),
        ("*/15 * * * *", "2026-12-04 20:15:00", "2026-12-04 20:30:00"),  # strictly after
        ("* * * * *", "2026-12-04 23:59:59", "2026-12-05 00:00:00"),
        ("30 4 * * mon-fri", "2026-12-04 05:00:00", "2026-12-07 04:30:00"),  # Friday past 04:30 → Monday
        ("0 0 29 feb *", "2026-03-01 00:00:00", "2028-02-29 00:00:00"),
        ("0 12 1 * 0", "2026-12-02 00:00:00", "2026-12-06 12:00:00"),  # both days restricted: either (Sunday)
        ("5/20 1 * * 7", "2026-12-04 00:00:00", "2026-12-06 01:05:00"),  # 7 is Sunday; 5/20 from 5 on
        ("@daily", "2026-12-04 20:00:00", "2026-12-05 00:00:00"),
        ("0 9-17/4 * jan,dec *", "2026-12-04 10:00:00", "2026-12-04 13:00:00"),
    ],
)
def test_next_fire_time(expression, after, expected):
    assert cron_parse(expression).next_after(at(after)) == at(expected)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "empty"),
        ("* * * *", "has 4 fields, not 5"),
        ("61 * * * *", "minute: 61 is out of range 0-59"),
        ("* * * foo *", "month: 'foo' is not a number or a name"),
        ("*/0 * * * *", "step '0' must be a positive number"),
        ("5-1 * * * *", "runs backwards"),
        ("0 0 31 2 *", "never fires"),
        ("@sometimes", "unknown shortcut"),
        ("1,,2 * * * *", "empty value"),
    ],
)
def test_invalid_expressions_say_what_is_wrong_in_one_line(expression, message):
    with pytest.raises(CronError) as raised:
        cron_parse(expression)
    assert message in str(raised.value) and "\n" not in str(raised.value)
