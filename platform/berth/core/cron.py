"""Cron expressions (five fields, UTC): parsed into sets of allowed values, and the next time one fires.

`minute hour day-of-month month day-of-week`, each `*`, a number, a range `a-b`, a step `*/n` or `a-b/n`, or a
comma list of those; months and weekdays also by name (`jan`, `mon`); weekday 0 and 7 are Sunday; the shortcuts
@hourly @daily @midnight @weekly @monthly @yearly @annually. As in Vixie cron, when both day fields are restricted
a day matching either one fires. Written here (a hundred lines) rather than depending on a library for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

SHORTCUTS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
WEEKDAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
# (name, lowest, highest, names for values counted from `lowest`)
FIELDS = (
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("day of month", 1, 31, None),
    ("month", 1, 12, MONTHS),
    ("day of week", 0, 7, WEEKDAYS),
)
# the longest gap between two fires of any valid expression is under 8 years (29 February on a given weekday)
SEARCH_DAYS = 366 * 8 + 2


class CronError(ValueError):
    """An expression that is not valid cron; the message is one line naming the field at fault."""


def _value(text: str, name: str, low: int, high: int, names: list[str] | None) -> int:
    word = text.lower()
    if names and word in names:
        return names.index(word) + low
    if not word.isdigit():
        raise CronError(f"{name}: {text!r} is not a number{' or a name' if names else ''}")
    number = int(word)
    if not low <= number <= high:
        raise CronError(f"{name}: {number} is out of range {low}-{high}")
    return number


def _field(text: str, name: str, low: int, high: int, names: list[str] | None) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) < 1:
                raise CronError(f"{name}: step {step_text!r} must be a positive number")
            step = int(step_text)
        if base == "*":
            first, last = low, high
        elif "-" in base:
            first_text, _, last_text = base.partition("-")
            first = _value(first_text, name, low, high, names)
            last = _value(last_text, name, low, high, names)
            if first > last:
                raise CronError(f"{name}: range {base!r} runs backwards")
        elif base:
            first = _value(base, name, low, high, names)
            last = high if slash else first  # `5/15` means from 5 on, every 15
        else:
            raise CronError(f"{name}: empty value in {text!r}")
        values.update(range(first, last + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class CronSchedule:
    """A parsed expression; `next_after(t)` is the first whole minute strictly after t when it fires."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, expression: str) -> CronSchedule:
        text = " ".join((expression or "").split())
        if not text:
            raise CronError("the schedule is empty; e.g. '*/15 * * * *' (every 15 minutes, UTC)")
        if len(text) > 200:
            raise CronError("the schedule is longer than 200 characters")
        words = SHORTCUTS.get(text.lower(), text).split(" ")
        if text.startswith("@") and text.lower() not in SHORTCUTS:
            raise CronError(f"unknown shortcut {text!r}; one of {', '.join(SHORTCUTS)}")
        if len(words) != 5:
            raise CronError(
                f"{text!r} has {len(words)} fields, not 5 (minute hour day-of-month month day-of-week, UTC)"
            )
        parsed = [_field(word, *spec) for word, spec in zip(words, FIELDS, strict=True)]
        weekdays = frozenset(day % 7 for day in parsed[4])
        return cls(
            expression=text,
            minutes=parsed[0],
            hours=parsed[1],
            days=parsed[2],
            months=parsed[3],
            weekdays=weekdays,
            any_day=words[2].startswith("*"),
            any_weekday=words[4].startswith("*"),
        )

    def _day_matches(self, day: datetime) -> bool:
        if day.month not in self.months:
            return False
        in_days = day.day in self.days
        in_weekdays = (day.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return in_days and in_weekdays
        return in_days or in_weekdays

    def next_after(self, moment: datetime) -> datetime:
        """The first minute strictly after `moment` (aware; UTC is used) at which the schedule fires."""
        start = moment.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        day = start.replace(hour=0, minute=0)
        for _ in range(SEARCH_DAYS):
            if self._day_matches(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        candidate = day.replace(hour=hour, minute=minute)
                        if candidate >= start:
                            return candidate
            day += timedelta(days=1)
        raise CronError(f"{self.expression!r} never fires (e.g. 31 February)")


def cron_parse(expression: str) -> CronSchedule:
    """The schedule of a valid expression; CronError (one line) otherwise, including one that never fires."""
    schedule = CronSchedule.parse(expression)
    schedule.next_after(datetime(2000, 1, 1, tzinfo=UTC))
    return schedule
