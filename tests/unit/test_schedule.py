"""Unit tests of schedule expressions: the forms, zones, DST, the hash spread, slots and bad input."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maomao.errors import ValidationError
from maomao.schedule import (
    Expression,
    format_duration,
    parse_duration,
    parse_expression,
    parse_slot_id,
    slot_id,
    spread_offset,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def daily_at(zone: str, hour: int, minute: int) -> Expression:
    """A daily expression whose spread happens to land at hour:minute local time."""
    return Expression("daily", zone, "daily", hour * 3600 + minute * 60)


def local_dates(fires: list[datetime], zone: ZoneInfo) -> Counter[str]:
    return Counter(fire.astimezone(zone).date().isoformat() for fire in fires)


# --- the forms ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "normalised", "kind"),
    [
        ("daily", "daily", "daily"),
        ("DAILY", "daily", "daily"),
        ("@daily", "daily", "daily"),
        (" @Weekly ", "weekly", "weekly"),
        ("weekly", "weekly", "weekly"),
        ("hourly", "hourly", "hourly"),
        ("@HOURLY", "hourly", "hourly"),
        ("*/5 * * * *", "*/5 * * * *", "cron"),
        ("0  3 * *\tmon-fri", "0 3 * * MON-FRI", "cron"),
        ("@every 30s", "@every 30s", "every"),
        ("@EVERY 90M", "@every 1h30m", "every"),
        ("@every 1h30m", "@every 1h30m", "every"),
        ("@every 1d", "@every 1d", "every"),
    ],
)
def test_forms_parse_and_normalise(text: str, normalised: str, kind: str) -> None:
    expression = parse_expression(text, "weather", "Europe/Berlin")
    assert (expression.text, expression.kind, expression.zone) == (normalised, kind, "Europe/Berlin")
    assert parse_expression(text, "weather").zone == "UTC"


def test_keyword_aliases_are_the_same_schedule() -> None:
    assert parse_expression("@daily", "weather") == parse_expression("Daily", "weather")
    assert parse_expression("@weekly", "weather") == parse_expression("weekly", "weather")
    assert parse_expression("@hourly", "weather") == parse_expression("HOURLY", "weather")


def test_daily_spread_is_a_stable_hash_of_the_tool_name() -> None:
    # hard-coded: Python's salted hash() would give another value in another process
    assert parse_expression("daily", "weather").next_after(JAN_1) == utc(2026, 1, 1, 2, 33, 2)
    assert parse_expression("daily", "tides").next_after(JAN_1) == utc(2026, 1, 1, 13, 13, 3)


def test_hourly_spread_is_within_each_hour() -> None:
    hourly = parse_expression("hourly", "weather")
    assert hourly.fires_between(JAN_1, utc(2026, 1, 1, 3)) == [
        utc(2026, 1, 1, 0, 33, 2),
        utc(2026, 1, 1, 1, 33, 2),
        utc(2026, 1, 1, 2, 33, 2),
    ]


def test_weekly_spread_is_within_each_week_from_monday() -> None:
    weekly = parse_expression("weekly", "arxiv-listing")
    first = weekly.next_after(JAN_1)
    assert first == utc(2026, 1, 7, 10, 55, 26)  # a Wednesday
    assert weekly.next_after(first) == first + timedelta(weeks=1)


def test_hundred_daily_tools_fire_in_different_seconds() -> None:
    fires = {parse_expression("daily", f"collector-{n}").next_after(JAN_1) for n in range(100)}
    assert len(fires) >= 95


def test_spread_forms_fire_at_local_wall_time() -> None:
    daily = parse_expression("daily", "weather", "America/New_York")
    fire = daily.next_after(JAN_1)
    assert fire.astimezone(NEW_YORK).replace(tzinfo=None) == datetime(2026, 1, 1, 2, 33, 2)
    summer = daily.next_after(utc(2026, 7, 1))
    assert summer.astimezone(NEW_YORK).time() == fire.astimezone(NEW_YORK).time()
    assert summer.utcoffset() == timedelta(0)
    weekly = parse_expression("weekly", "arxiv-listing", "Asia/Tokyo")
    local = weekly.next_after(JAN_1).astimezone(ZoneInfo("Asia/Tokyo"))
    assert (local.weekday(), local.hour, local.minute, local.second) == (2, 10, 55, 26)
    # India is UTC+05:30: the local minute and second are the tool's, so the UTC minute is off by half an hour
    hourly = parse_expression("hourly", "weather", "Asia/Kolkata")
    assert hourly.next_after(JAN_1) == utc(2026, 1, 1, 0, 3, 2)


def test_cron_fires() -> None:
    every_five = parse_expression("*/5 * * * *", "x")
    assert every_five.next_after(utc(2026, 5, 1, 12, 3, 10)) == utc(2026, 5, 1, 12, 5)
    assert every_five.next_after(utc(2026, 5, 1, 12, 5)) == utc(2026, 5, 1, 12, 10)
    assert every_five.last_at_or_before(utc(2026, 5, 1, 12, 5)) == utc(2026, 5, 1, 12, 5)
    weekdays = parse_expression("0 3 * * 1-5", "x", "Europe/Berlin")
    friday_morning = datetime(2026, 5, 8, 4, tzinfo=BERLIN)
    assert weekdays.next_after(friday_morning) == utc(2026, 5, 11, 1)  # Monday 03:00 CEST
    named = parse_expression("0 3 * * mon-fri", "x", "Europe/Berlin")
    assert named.fires_between(JAN_1, utc(2026, 2, 1)) == weekdays.fires_between(JAN_1, utc(2026, 2, 1))


def test_every_is_aligned_to_the_epoch_plus_the_tool_spread_in_any_zone() -> None:
    every = parse_expression("@every 15m", "a")
    offset = timedelta(seconds=spread_offset("a", timedelta(minutes=15)))
    assert timedelta(0) <= offset < timedelta(minutes=15) and every.offset == offset.total_seconds()
    # two members that look at the clock at different moments compute the same grid
    early = every.fires_between(utc(2026, 5, 1, 12, 7, 13) + offset, utc(2026, 5, 1, 14))
    late = every.fires_between(utc(2026, 5, 1, 12, 52, 59), utc(2026, 5, 1, 14))
    assert early[0] == utc(2026, 5, 1, 12, 15) + offset
    assert early[-len(late) :] == late
    odd = parse_expression("@every 7m", "b", "Asia/Kolkata")
    odd_offset = timedelta(seconds=spread_offset("b", timedelta(minutes=7)))
    for fire in odd.fires_between(JAN_1, JAN_1 + timedelta(hours=3)):
        assert (fire - odd_offset - datetime(1970, 1, 1, tzinfo=UTC)) % timedelta(minutes=7) == timedelta(0)
    # the zone does not move the grid; the tool's name does
    assert odd.fires_between(JAN_1, utc(2026, 1, 2)) == parse_expression("@every 7m", "b").fires_between(
        JAN_1, utc(2026, 1, 2)
    )
    starts = {parse_expression("@every 1m", f"tool-{i}").next_after(JAN_1) for i in range(100)}
    assert len(starts) >= 40  # a hundred minutely tools spread over the minute
    day = parse_expression("@every 1d", "d", "America/New_York")
    fire = day.next_after(utc(2026, 7, 1, 12))
    assert utc(2026, 7, 1, 12) < fire <= utc(2026, 7, 2, 12)
    assert (fire - datetime(1970, 1, 1, tzinfo=UTC) - timedelta(seconds=day.offset)) % timedelta(days=1) == timedelta(0)
    assert parse_expression("@every 1s", "e").next_after(utc(2026, 7, 1, 12)) == utc(2026, 7, 1, 12, 0, 1)


@pytest.mark.parametrize(
    ("text", "period"),
    [
        ("hourly", timedelta(hours=1)),
        ("daily", timedelta(days=1)),
        ("weekly", timedelta(weeks=1)),
        ("@every 90m", timedelta(minutes=90)),
        ("*/5 * * * *", timedelta(minutes=5)),
        ("0 3 * * 1-5", timedelta(days=1)),
        ("0 0 1 * *", timedelta(days=28)),
        ("0,10 3 * * *", timedelta(minutes=10)),
    ],
)
def test_period(text: str, period: timedelta) -> None:
    assert parse_expression(text, "weather", "Europe/Berlin").period == period


# --- DST -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "fire"),
    [
        # spring forward: 02:30 does not exist, the fire is shifted forward by the one-hour gap to 03:30
        (daily_at("Europe/Berlin", 2, 30), utc(2026, 3, 29, 1, 30)),
        (daily_at("America/New_York", 2, 30), utc(2026, 3, 8, 7, 30)),
        # fall back: the time occurs twice, the fire is the first occurrence (summer time)
        (daily_at("Europe/Berlin", 2, 30), utc(2026, 10, 25, 0, 30)),
        (daily_at("America/New_York", 1, 30), utc(2026, 11, 1, 5, 30)),
        # cron: cronsim fires a skipped fixed time at the end of the gap, a repeated one at the first occurrence
        (parse_expression("30 2 * * *", "x", "Europe/Berlin"), utc(2026, 3, 29, 1)),
        (parse_expression("30 2 * * *", "x", "America/New_York"), utc(2026, 3, 8, 7)),
        (parse_expression("30 2 * * *", "x", "Europe/Berlin"), utc(2026, 10, 25, 0, 30)),
        (parse_expression("30 1 * * *", "x", "America/New_York"), utc(2026, 11, 1, 5, 30)),
    ],
)
def test_fire_on_a_dst_day(expression: Expression, fire: datetime) -> None:
    just_before = fire - timedelta(seconds=1)
    assert expression.next_after(just_before) == fire
    assert expression.last_at_or_before(fire + timedelta(hours=20)) == fire
    # and no other fire within the local day on either side
    previous = expression.last_at_or_before(just_before)
    assert previous is not None and fire - previous > timedelta(hours=20)
    assert expression.next_after(fire) - fire > timedelta(hours=20)


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York"])
@pytest.mark.parametrize(
    "expression",
    [
        lambda zone: daily_at(zone, 2, 30),
        lambda zone: daily_at(zone, 1, 30),
        lambda zone: parse_expression("daily", "weather", zone),
        lambda zone: parse_expression("30 2 * * *", "x", zone),
        lambda zone: parse_expression("30 1 * * *", "x", zone),
    ],
)
@pytest.mark.parametrize("month", [3, 10, 11])
def test_daily_fires_once_each_local_day_across_dst(
    zone: str, expression: Callable[[str], Expression], month: int
) -> None:
    schedule = expression(zone)
    start, end = utc(2026, month, 1), utc(2026, month + 1, 1)
    fires = schedule.fires_between(start, end)
    days = local_dates(fires, ZoneInfo(zone))
    assert set(days.values()) == {1}
    assert len(days) >= 29


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York"])
def test_weekly_fires_once_each_local_week_across_dst(zone: str) -> None:
    weekly = Expression("weekly", zone, "weekly", 6 * 86400 + 2 * 3600 + 1800)  # Sunday 02:30, the US change day
    fires = weekly.fires_between(utc(2026, 2, 1), utc(2026, 12, 1))
    assert len(fires) == 44  # the Sundays from 1 February to 29 November
    assert all(fire.astimezone(ZoneInfo(zone)).weekday() == 6 for fire in fires)
    assert all(abs(b - a - timedelta(weeks=1)) <= timedelta(hours=1) for a, b in pairwise(fires))


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York"])
@pytest.mark.parametrize("text", ["hourly", "*/30 * * * *", "@every 20m"])
def test_interval_schedules_keep_real_time_intervals_across_dst(zone: str, text: str) -> None:
    schedule = parse_expression(text, "weather", zone)
    for start in (utc(2026, 3, 7), utc(2026, 3, 28), utc(2026, 10, 24), utc(2026, 10, 31)):
        fires = schedule.fires_between(start, start + timedelta(days=2))
        assert {b - a for a, b in pairwise(fires)} == {schedule.period}


def test_hourly_fires_twice_in_a_repeated_hour_and_never_in_a_skipped_one() -> None:
    hourly = Expression("hourly", "Europe/Berlin", "hourly", 1800)
    fall = hourly.fires_between(utc(2026, 10, 24, 23), utc(2026, 10, 25, 3))
    assert [f.astimezone(BERLIN).strftime("%H:%M%z") for f in fall] == [
        "01:30+0200",
        "02:30+0200",
        "02:30+0100",
        "03:30+0100",
    ]
    spring = hourly.fires_between(utc(2026, 3, 28, 23), utc(2026, 3, 29, 3))
    assert [f.astimezone(BERLIN).strftime("%H:%M%z") for f in spring] == [
        "00:30+0100",
        "01:30+0100",
        "03:30+0200",
        "04:30+0200",
    ]


def test_hourly_fires_whenever_the_clock_shows_its_minute_and_second() -> None:
    zone = ZoneInfo("Australia/Lord_Howe")  # half-hour DST: 02:00 -> 02:30 in October, 02:00 -> 01:30 in April
    hourly = Expression("hourly", "Australia/Lord_Howe", "hourly", 15 * 60)
    for start in (utc(2026, 4, 4), utc(2026, 10, 3)):
        fires = hourly.fires_between(start, start + timedelta(days=2))
        assert {(f.astimezone(zone).minute, f.astimezone(zone).second) for f in fires} == {(15, 0)}
        gaps = Counter(b - a for a, b in pairwise(fires))
        assert gaps == {timedelta(hours=1): len(fires) - 2, timedelta(minutes=90): 1}


# --- consistency (property-based) --------------------------------------------------------------------------------

EXPRESSIONS = [
    parse_expression("daily", "weather", "Europe/Berlin"),
    daily_at("Europe/Berlin", 2, 30),
    daily_at("America/New_York", 1, 30),
    daily_at("America/New_York", 2, 30),
    parse_expression("weekly", "arxiv-listing", "America/New_York"),
    parse_expression("hourly", "tides", "Asia/Kolkata"),
    parse_expression("hourly", "tides", "Europe/Berlin"),
    Expression("hourly", "Australia/Lord_Howe", "hourly", 15 * 60),
    parse_expression("*/5 * * * *", "x", "Europe/Berlin"),
    parse_expression("30 2 * * *", "x", "Europe/Berlin"),
    parse_expression("30 1 * * *", "x", "America/New_York"),
    parse_expression("0 1-3 * * *", "x", "America/New_York"),
    parse_expression("15 0,12 * * 1-5", "x", "Australia/Sydney"),
    parse_expression("@every 7m", "x"),
    parse_expression("@every 1d", "x", "America/New_York"),
]
DST_CHANGES = [
    utc(2026, 3, 8, 7),
    utc(2026, 3, 29, 1),
    utc(2026, 10, 25, 1),
    utc(2026, 11, 1, 6),
    utc(2026, 4, 4, 16),
    utc(2026, 10, 3, 16),
]
ZONES = st.sampled_from([UTC, BERLIN, NEW_YORK, ZoneInfo("Asia/Kolkata")])
TIMES = st.one_of(
    st.datetimes(datetime(1971, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC)),
    st.builds(
        lambda change, seconds, zone: (change + timedelta(seconds=seconds)).astimezone(zone),
        st.sampled_from(DST_CHANGES),
        st.floats(-2 * 86400, 2 * 86400),
        ZONES,
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(EXPRESSIONS), TIMES)
def test_next_and_last_agree(expression: Expression, t: datetime) -> None:
    following = expression.next_after(t)
    assert following > t
    assert following.tzinfo is UTC and following.microsecond == 0
    assert expression.last_at_or_before(following) == following
    last = expression.last_at_or_before(t)
    assert last is not None and last <= t
    assert last.tzinfo is UTC and last.microsecond == 0
    assert expression.next_after(last) == following


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(EXPRESSIONS), TIMES, st.integers(0, 6 * 3600))
def test_fires_between_is_the_forward_walk(expression: Expression, start: datetime, seconds: int) -> None:
    end = start + timedelta(seconds=seconds)
    fires = expression.fires_between(start, end)
    assert all(start < fire <= end for fire in fires)
    if not fires:
        assert expression.next_after(start) > end
        return
    assert fires[0] == expression.next_after(start)
    assert all(expression.next_after(a) == b for a, b in pairwise(fires))
    assert expression.next_after(fires[-1]) > end


def test_fires_between_bounds_and_limit() -> None:
    minutely = parse_expression("@every 1m", "x")
    shift = timedelta(seconds=minutely.offset)
    hour = minutely.fires_between(JAN_1 + shift, utc(2026, 1, 1, 1) + shift)
    assert hour[0] == utc(2026, 1, 1, 0, 1) + shift and hour[-1] == utc(2026, 1, 1, 1) + shift and len(hour) == 60
    assert minutely.fires_between(JAN_1 + shift, utc(2026, 1, 1, 1) + shift, limit=10) == hour[-10:]
    assert minutely.fires_between(JAN_1, utc(2026, 1, 1, 1), limit=0) == []
    assert minutely.fires_between(utc(2026, 1, 1, 1), JAN_1) == []
    assert minutely.fires_between(JAN_1, JAN_1) == []


def test_outputs_are_utc_seconds_for_any_aware_input() -> None:
    minutely = parse_expression("@every 1m", "x")
    shift = timedelta(seconds=minutely.offset)
    before = datetime(2026, 1, 1, 12, 4, 59, 500000, tzinfo=BERLIN) + shift
    assert minutely.next_after(before) == utc(2026, 1, 1, 11, 5) + shift
    assert (
        minutely.last_at_or_before(utc(2026, 1, 1, 11, 5, 0) + shift + timedelta(microseconds=300))
        == utc(2026, 1, 1, 11, 5) + shift
    )
    cron = parse_expression("*/5 * * * *", "x")
    assert cron.next_after(datetime(2026, 1, 1, 12, 4, 59, 999999, tzinfo=UTC)) == utc(2026, 1, 1, 12, 5)
    assert cron.last_at_or_before(datetime(2026, 1, 1, 12, 4, 59, 999999, tzinfo=UTC)) == utc(2026, 1, 1, 12)


def test_naive_datetimes_are_rejected() -> None:
    naive = datetime(2026, 1, 1)
    expression = parse_expression("daily", "weather")
    with pytest.raises(ValueError, match="naive"):
        expression.next_after(naive)
    with pytest.raises(ValueError, match="naive"):
        expression.last_at_or_before(naive)
    with pytest.raises(ValueError, match="naive"):
        expression.fires_between(naive, JAN_1)
    with pytest.raises(ValueError, match="naive"):
        expression.fires_between(JAN_1, naive)
    with pytest.raises(ValueError, match="naive"):
        slot_id(naive)


# --- durations and slots -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "duration"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("1h30m", timedelta(minutes=90)),
        (" 1D2H3M4S ", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("90m", timedelta(minutes=90)),
        ("366d", timedelta(days=366)),
    ],
)
def test_parse_duration(text: str, duration: timedelta) -> None:
    assert parse_duration(text) == duration


def test_format_duration_round_trips() -> None:
    assert format_duration(timedelta(minutes=90)) == "1h30m"
    assert format_duration(timedelta(days=1, seconds=5)) == "1d5s"
    for text in ("30s", "15m", "2h", "1d", "1d2h3m4s"):
        assert format_duration(parse_duration(text)) == text


def test_slot_id() -> None:
    assert slot_id(utc(2026, 11, 30, 3)) == "20261130T030000Z"
    assert slot_id(datetime(2026, 11, 30, 4, 0, 0, 999999, tzinfo=BERLIN)) == "20261130T030000Z"
    assert parse_slot_id("20261130T030000Z") == utc(2026, 11, 30, 3)


@given(st.datetimes(timezones=st.just(UTC)), st.datetimes(timezones=st.just(UTC)))
def test_slot_id_round_trips_and_sorts_as_time(a: datetime, b: datetime) -> None:
    assert parse_slot_id(slot_id(a)) == a.replace(microsecond=0)
    a, b = a.replace(microsecond=0), b.replace(microsecond=0)
    assert (slot_id(a) < slot_id(b)) == (a < b)


# --- bad input -----------------------------------------------------------------------------------------------------


def assert_one_line(error: pytest.ExceptionInfo[ValidationError]) -> None:
    message = str(error.value)
    assert message and "\n" not in message and len(message) < 160


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "sometimes",
        "daily weekly",
        "daily\n0 * * * *",
        "@every",
        "@every 5m 3s",
        "@every 0s",
        "@every nope",
        "@every 400d",
        "@monthly",
        "@reboot",
        "* * * * * *",
        "* * * *",
        "61 * * * *",
        "* 24 * * *",
        "*/0 * * * *",
        "0 0 30 2 *",
        "0 0 */31 2 MON#5",
        "a b c d e",
        "@every 1m * * * *",
        "* " * 300,
    ],
)
def test_bad_expressions(text: str) -> None:
    with pytest.raises(ValidationError) as error:
        parse_expression(text, "weather")
    assert_one_line(error)


@pytest.mark.parametrize(
    "text",
    ["", " ", "0s", "0h0m", "-5m", "5", "m", "5x", "1.5h", "5 m", "1m1h", "367d", "366d1s", "\u0663s", "9" * 13 + "d"],
)
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValidationError) as error:
        parse_duration(text)
    assert_one_line(error)


@pytest.mark.parametrize(
    "zone", ["Mars/Olympus", "", "utc", "Europe", "../etc/passwd", "/etc/localtime", "localtime", "Europe/Berlin\n"]
)
def test_bad_zones(zone: str) -> None:
    with pytest.raises(ValidationError) as error:
        parse_expression("daily", "weather", zone)
    assert_one_line(error)


@pytest.mark.parametrize(
    "text",
    ["", "2026-11-30T03:00:00Z", "20261130T030000", "20261330T030000Z", "20261130T250000Z", "20261130t030000z"],
)
def test_bad_slot_ids(text: str) -> None:
    with pytest.raises(ValidationError) as error:
        parse_slot_id(text)
    assert_one_line(error)


CRON_FIELD = st.text(alphabet="0123456789*/,-#LW?", min_size=1, max_size=6)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.lists(CRON_FIELD, min_size=5, max_size=5).map(" ".join),
        st.text(alphabet="0123456789*/,-# @adehilrvwyMONFRIJ\n", max_size=24),
    )
)
def test_any_text_parses_or_raises_validation_error(text: str) -> None:
    try:
        expression = parse_expression(text, "weather", "Europe/Berlin")
    except ValidationError as error:
        assert "\n" not in str(error)
        return
    assert expression.next_after(JAN_1) > JAN_1
