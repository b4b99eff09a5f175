"""agent.durations: the one duration grammar, and the JSON form config and checks share."""

from __future__ import annotations

import pytest

from agent.durations import (
    SECOND,
    DurationError,
    config_seconds,
    json_seconds,
    parse_duration,
    parse_seconds,
)


def test_parse_duration_is_go_nanoseconds() -> None:
    assert parse_duration("1m30s") == 90 * SECOND
    assert parse_duration("-1.5h") == -5400 * SECOND
    assert parse_duration("0") == 0
    with pytest.raises(DurationError, match=r'^time: missing unit in duration "10"$'):
        parse_duration("10")
    with pytest.raises(DurationError, match=r'^time: invalid duration " 5s"$'):
        parse_duration(" 5s")  # Go does not trim


def test_parse_seconds_trims_and_keeps_the_sign() -> None:
    assert parse_seconds(" 250ms\n") == 0.25
    assert parse_seconds("-5s") == -5.0


def test_json_seconds_reads_strings_and_nanosecond_numbers() -> None:
    assert json_seconds("1m") == 60.0
    assert json_seconds(5_000_000_000) == 5.0
    assert json_seconds(1.5e9) == 1.5
    assert json_seconds(-1e9) == -1.0
    with pytest.raises(DurationError):
        json_seconds("soon")
    for not_a_duration in (True, False, None, [1], {"s": 1}):
        with pytest.raises(TypeError):
            json_seconds(not_a_duration)


def test_json_seconds_with_another_string_parser() -> None:
    assert json_seconds("30s", config_seconds) == 30.0
    with pytest.raises(ValueError, match=r'expected a duration such as "30s" or "1m", got "-5s"'):
        json_seconds("-5s", config_seconds)  # config durations are never negative
    assert json_seconds(-5, config_seconds) == -5e-9  # numbers bypass the string parser
