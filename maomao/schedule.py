"""Schedule expressions -> fire times.

A tool's schedule is one of (keywords are case-insensitive):

* ``daily``, ``weekly``, ``hourly`` (or ``@daily``, ``@weekly``, ``@hourly``): once a day, week or
  hour at a moment spread by a stable hash of the tool name, so a hundred daily tools do not all
  start in the same second. Daily and weekly fire at a wall-clock time in the expression's zone,
  once per local day or week: a time that a spring-forward skips fires shifted forward by the gap,
  a time that a fall-back repeats fires at its first occurrence. Hourly fires whenever the zone's
  clock shows the tool's minute and second (twice in a repeated hour, never in a skipped one).
* a five-field cron expression (``m h dom mon dow``), evaluated in the zone by cronsim, with its
  Debian-cron DST rules: a fixed time that a spring-forward skips fires at the end of the gap, one
  that a fall-back repeats fires once.
* ``@every DURATION``: every DURATION since the Unix epoch, shifted by a stable hash of the tool
  name (less than one DURATION), whatever the zone: every member computes the same slots without
  coordination, and a thousand ``@every 1m`` tools do not all start in the same second.

Every returned time is an aware UTC datetime with whole seconds; naive inputs raise ValueError.
A bad expression, duration or zone raises :class:`~maomao.errors.ValidationError` with one line.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import cached_property
from itertools import pairwise
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from maomao.errors import ValidationError

__all__ = [
    "Expression",
    "Kind",
    "format_duration",
    "parse_duration",
    "parse_expression",
    "parse_slot_id",
    "slot_id",
    "spread_offset",
]

Kind = Literal["hourly", "daily", "weekly", "cron", "every"]

SECOND = timedelta(seconds=1)
MAX_DURATION = timedelta(days=366)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SPREAD_PERIODS: dict[str, timedelta] = {
    "hourly": timedelta(hours=1),
    "daily": timedelta(days=1),
    "weekly": timedelta(weeks=1),
}
_KEYWORDS: dict[str, Kind] = {word: kind for kind in ("hourly", "daily", "weekly") for word in (kind, "@" + kind)}

_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(?:([0-9]{1,12})d)?(?:([0-9]{1,12})h)?(?:([0-9]{1,12})m)?(?:([0-9]{1,12})s)?", re.IGNORECASE)
_SLOT = re.compile(r"[0-9]{8}T[0-9]{6}Z")
_MACHINE_ZONES = {"localtime", "posixrules"}  # files in the zone directory that differ between machines
_PERIOD_FROM = datetime(2026, 1, 1, tzinfo=UTC)  # a cron's period is its smallest gap over the fires after this
_PERIOD_FIRES = 16


@dataclass(frozen=True)
class Expression:
    """A parsed, validated schedule; build it with :func:`parse_expression`."""

    text: str  # normalised: "daily", "@every 30s", "*/5 * * * *"
    zone: str  # IANA zone name
    kind: Kind
    seconds: int  # hourly/daily/weekly: the spread offset into the period; every: the step; cron: 0
    offset: int = 0  # every: the spread offset into each step

    def next_after(self, t: datetime) -> datetime:
        """The first fire time strictly after ``t``."""
        t = _utc(t)
        if self.kind == "every":
            return _from_epoch(((_to_epoch(t) - self.offset) // self.seconds + 1) * self.seconds + self.offset)
        if self.kind == "cron":
            return self._cron_next(t)
        return min(fire for fire in self._spread_fires(t) if fire > t)

    def last_at_or_before(self, t: datetime) -> datetime | None:
        """The latest fire time at or before ``t``, None if there is none."""
        t = _utc(t)
        if self.kind == "every":
            return _from_epoch((_to_epoch(t) - self.offset) // self.seconds * self.seconds + self.offset)
        if self.kind == "cron":
            return self._cron_last(t)
        return max(fire for fire in self._spread_fires(t) if fire <= t)

    def fires_between(self, start: datetime, end: datetime, limit: int = 1000) -> list[datetime]:
        """The fire times in (start, end], ascending; the newest ``limit`` of them if there are more."""
        start = _utc(start)
        fires: list[datetime] = []
        fire = self.last_at_or_before(end)
        while fire is not None and fire > start and len(fires) < limit:
            fires.append(fire)
            fire = self.last_at_or_before(fire - SECOND)
        return fires[::-1]

    @cached_property
    def period(self) -> timedelta:
        """The nominal interval between fires; for cron, the smallest gap between its next few fires."""
        if self.kind == "every":
            return timedelta(seconds=self.seconds)
        if self.kind != "cron":
            return SPREAD_PERIODS[self.kind]
        fires = [self.next_after(_PERIOD_FROM)]
        for _ in range(_PERIOD_FIRES):
            fires.append(self.next_after(fires[-1]))
        return min(later - earlier for earlier, later in pairwise(fires))

    def _spread_fires(self, t: datetime) -> list[datetime]:
        """The fires of an hourly, daily or weekly expression within two periods either side of ``t``."""
        zone = ZoneInfo(self.zone)
        local = t.astimezone(zone).replace(tzinfo=None)
        midnight = datetime.combine(local.date(), time())
        start = {
            "hourly": local.replace(minute=0, second=0),
            "daily": midnight,
            "weekly": midnight - timedelta(days=local.weekday()),
        }[self.kind]
        period = SPREAD_PERIODS[self.kind]
        walls = [start + k * period + timedelta(seconds=self.seconds) for k in range(-2, 3)]
        if self.kind != "hourly":
            # fold=0: the first of a repeated time; a skipped time comes out shifted forward by the gap
            return [wall.replace(tzinfo=zone).astimezone(UTC) for wall in walls]
        instants = [wall.replace(tzinfo=zone, fold=fold) for wall in walls for fold in (0, 1)]
        return [instant.astimezone(UTC) for instant in instants if _exists(instant)]

    def _cron_next(self, t: datetime) -> datetime:
        for fire in CronSim(self.text, t.astimezone(ZoneInfo(self.zone))):
            # cronsim walks fixed-time expressions in naive local time, which can step back in a repeated hour
            if fire.astimezone(UTC) > t:
                return fire.astimezone(UTC)
        raise ValueError(f"{self.text!r} does not fire in the 50 years after {t.isoformat()}")

    def _cron_last(self, t: datetime) -> datetime | None:
        # cronsim's reverse walk can miss or invent a fire next to a DST change: take each of its candidates
        # only as a place to start the forward walk, which is the one definition of the fire times
        for candidate in CronSim(self.text, (t + SECOND).astimezone(ZoneInfo(self.zone)), reverse=True):
            last = None
            fire = self._cron_next(candidate.astimezone(UTC) - SECOND)
            while fire <= t:
                last, fire = fire, self._cron_next(fire)
            if last is not None:
                return last
        return None


def parse_expression(text: str, tool: str, zone: str = "UTC") -> Expression:
    """Parse and validate a schedule for the tool named ``tool`` (whose name spreads the keyword forms)."""
    _zone(zone)
    words = text.split()
    keyword = words[0].lower() if words else ""
    if len(words) == 1 and keyword in _KEYWORDS:
        kind = _KEYWORDS[keyword]
        return Expression(kind, zone, kind, spread_offset(tool, SPREAD_PERIODS[kind]))
    if keyword == "@every":
        if len(words) != 2:
            raise ValidationError(f"bad schedule {_quote(text)}: expected @every DURATION, e.g. @every 15m")
        step = parse_duration(words[1])
        return Expression(f"@every {format_duration(step)}", zone, "every", step // SECOND, spread_offset(tool, step))
    if len(words) == 6:
        raise ValidationError(f"bad schedule {_quote(text)}: cron with a seconds field is not supported, use five")
    if len(words) != 5 or keyword.startswith("@"):
        raise ValidationError(
            f"bad schedule {_quote(text)}: expected daily, weekly, hourly, @every DURATION or five-field cron"
        )
    expression = Expression(" ".join(words).upper(), zone, "cron", 0)
    try:
        CronSim(expression.text, _PERIOD_FROM)
    except CronSimError as exc:
        raise ValidationError(f"bad cron expression {_quote(text)}: {str(exc).lower()} field") from None
    try:
        expression.period  # noqa: B018 -- walks the first fires, proving there are some
    except ValueError:
        raise ValidationError(f"bad cron expression {_quote(text)}: it never fires") from None
    return expression


def parse_duration(text: str) -> timedelta:
    """Parse ``30s``, ``15m``, ``2h``, ``1d`` or a combination in that order such as ``1h30m``."""
    match = _DURATION.fullmatch(text.strip())
    if not text.strip() or match is None:
        raise ValidationError(f"bad duration {_quote(text)}: expected e.g. 30s, 15m, 2h, 1d or 1h30m")
    seconds = sum(int(n) * unit for n, unit in zip(match.groups(), _UNITS.values(), strict=True) if n)
    if seconds == 0:
        raise ValidationError(f"bad duration {_quote(text)}: must be more than zero")
    if seconds > MAX_DURATION // SECOND:
        raise ValidationError(f"bad duration {_quote(text)}: must be at most 366d")
    return timedelta(seconds=seconds)


def format_duration(duration: timedelta) -> str:
    """The canonical spelling of a whole-second duration: ``1h30m``, ``45s``, ``0s``."""
    rest = duration // SECOND
    parts = []
    for name, unit in _UNITS.items():
        count, rest = divmod(rest, unit)
        if count:
            parts.append(f"{count}{name}")
    return "".join(parts) or "0s"


def spread_offset(tool: str, period: timedelta) -> int:
    """Seconds into each period at which the tool's keyword schedule fires: the same in every process."""
    digest = hashlib.sha256(tool.encode()).digest()
    return int.from_bytes(digest, "big") % (period // SECOND)


def slot_id(t: datetime) -> str:
    """A key-safe identifier of the second ``t`` falls in, e.g. ``20261130T030000Z``; sorts as time does."""
    t = _utc(t)
    return f"{t.year:04}{t.month:02}{t.day:02}T{t.hour:02}{t.minute:02}{t.second:02}Z"


def parse_slot_id(s: str) -> datetime:
    """The UTC time a :func:`slot_id` names."""
    try:
        if not _SLOT.fullmatch(s):
            raise ValueError
        return datetime(int(s[:4]), int(s[4:6]), int(s[6:8]), int(s[9:11]), int(s[11:13]), int(s[13:15]), tzinfo=UTC)
    except ValueError:
        raise ValidationError(f"bad slot id {_quote(s)}: expected e.g. 20261130T030000Z") from None


def _zone(name: str) -> ZoneInfo:
    try:
        if name in _MACHINE_ZONES:
            raise ValueError
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValidationError(f"unknown time zone {_quote(name)}: expected an IANA name, e.g. Europe/Berlin") from None


def _utc(t: datetime) -> datetime:
    if t.utcoffset() is None:
        raise ValueError(f"naive datetime {t.isoformat()}: a timezone-aware one is required")
    return t.astimezone(UTC).replace(microsecond=0)


def _exists(local: datetime) -> bool:
    """Whether the zone's clock shows this wall time at some instant (it does not in a skipped hour)."""
    return local.astimezone(UTC).astimezone(local.tzinfo).replace(tzinfo=None) == local.replace(tzinfo=None)


def _to_epoch(t: datetime) -> int:
    return (t - EPOCH) // SECOND


def _from_epoch(seconds: int) -> datetime:
    return EPOCH + timedelta(seconds=seconds)


def _quote(text: str) -> str:
    """The user's text for a one-line message: repr escapes newlines; long text is cut."""
    return repr(text if len(text) <= 60 else text[:57] + "...")
