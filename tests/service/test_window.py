"""The request log's time windows: one rule for the list, the summary and both CLI commands."""

from __future__ import annotations

import datetime as dt

import pytest

from service.db.queries import (
    DEFAULT_REPORT_WINDOW,
    WindowError,
    check_window,
    report_window,
)

NOON = dt.datetime(2026, 11, 30, 12, tzinfo=dt.UTC)


def test_a_list_filter_takes_either_bound_alone_but_no_empty_window() -> None:
    check_window(None, None)
    check_window(NOON, None)
    check_window(None, NOON)
    check_window(NOON, NOON + dt.timedelta(seconds=1))
    for since in (NOON, NOON + dt.timedelta(hours=1)):  # equal bounds hold nothing either
        with pytest.raises(WindowError, match="^since must be before until$"):
            check_window(since, NOON)


def test_a_summary_defaults_to_the_day_before_its_end() -> None:
    assert report_window(None, NOON) == (NOON - DEFAULT_REPORT_WINDOW, NOON)
    assert DEFAULT_REPORT_WINDOW == dt.timedelta(hours=24)
    start, end = report_window(None, None)
    assert abs((dt.datetime.now(dt.UTC) - end).total_seconds()) < 5 and end - start == DEFAULT_REPORT_WINDOW
    assert report_window(NOON - dt.timedelta(hours=2), NOON) == (NOON - dt.timedelta(hours=2), NOON)


def test_a_summary_refuses_a_future_start_and_an_end_too_early_for_its_default() -> None:
    future = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    with pytest.raises(WindowError) as refused:
        report_window(future, None)  # checked after the default end: now
    assert str(refused.value) == "since must be before until (default: now)"
    assert refused.value.describe("--since", "--until") == "--since must be before --until (default: now)"
    with pytest.raises(WindowError) as early:
        report_window(None, dt.datetime(1, 1, 1, 12, tzinfo=dt.UTC))
    assert early.value.describe("--since", "--until").endswith("give --since")
    assert str(early.value).startswith("until is too early") and "--" not in str(early.value)
