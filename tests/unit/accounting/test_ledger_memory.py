"""The ledger without Redis: budget windows on a fake wall clock, periods, snapshots."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import switchboard.accounting
from switchboard.accounting import BudgetWindow, Dimension, Ledger, Period, WindowSpend
from switchboard.accounting.book import OTHER

from .fakes import T0, Wall, call, paid

KEY, TEAM, GROUP = Dimension.KEY, Dimension.TEAM, Dimension.GROUP
DAY = 86_400.0


def at(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


def test_public_names_are_pinned() -> None:
    assert sorted(switchboard.accounting.__all__) == [
        "AttemptRecord",
        "BudgetWindow",
        "CallRecord",
        "CallStats",
        "Dimension",
        "Ledger",
        "Period",
        "Snapshot",
        "SyncStatus",
        "WindowSpend",
    ]


def test_window_spend_rolls_over_with_the_window() -> None:
    wall = Wall()
    ledger = Ledger(windows={(KEY, "alice"): BudgetWindow("1d")}, wall=wall)
    midnight = (T0 // DAY + 1) * DAY
    assert ledger.window_spend(KEY, "alice") == (0.0, midnight)
    ledger.record(paid(1.0))
    ledger.record(paid(0.5, key="bob"))
    assert ledger.window_spend(KEY, "alice") == (1.0, midnight)
    wall.now = midnight - 1e-6
    ledger.record(paid(0.25))
    assert ledger.window_spend(KEY, "alice") == (1.25, midnight)
    wall.now = midnight
    assert ledger.window_spend(KEY, "alice") == (0.0, midnight + DAY)
    ledger.record(paid(2.0))
    assert ledger.window_spend(KEY, "alice") == (2.0, midnight + DAY)


def test_a_record_after_the_window_rolled_does_not_add_to_the_old_one() -> None:
    wall = Wall()
    ledger = Ledger(windows={(TEAM, "red"): BudgetWindow("30s")}, wall=wall)
    ledger.record(paid(1.0))
    wall.advance(30)
    ledger.record(paid(2.0))  # rolls the window on the record, not on a read
    spend, resets_at = ledger.window_spend(TEAM, "red")
    assert spend == 2.0
    assert resets_at == (T0 // 30 + 2) * 30


def test_calendar_month_budgets_reset_on_the_first() -> None:
    wall = Wall(at(2026, 12, 31, 23, 59, 59))
    ledger = Ledger(windows={(GROUP, "chat"): BudgetWindow("1mo")}, wall=wall)
    ledger.record(paid(3.0))
    assert ledger.window_spend(GROUP, "chat") == (3.0, at(2027, 1, 1))
    wall.now = at(2027, 1, 1)
    assert ledger.window_spend(GROUP, "chat") == (0.0, at(2027, 2, 1))


def test_deployment_and_provider_budgets_count_attempts() -> None:
    ledger = Ledger(
        windows={
            (Dimension.DEPLOYMENT, "gpt-a"): BudgetWindow("1h"),
            (Dimension.PROVIDER, "openai"): BudgetWindow("1d"),
        },
        wall=Wall(),
    )
    ledger.record(paid(0.5, deployment="gpt-a"))
    ledger.record(paid(0.25, deployment="gpt-b"))
    assert ledger.window_spend(Dimension.DEPLOYMENT, "gpt-a")[0] == 0.5
    assert ledger.window_spend(Dimension.PROVIDER, "openai")[0] == 0.75


def test_only_configured_entities_have_a_window() -> None:
    ledger = Ledger(windows={(KEY, "alice"): BudgetWindow("1d")}, wall=Wall())
    ledger.record(paid(1.0, key="bob"))
    with pytest.raises(KeyError):
        ledger.window_spend(KEY, "bob")
    with pytest.raises(KeyError):
        ledger.window_spend(TEAM, "alice")
    with pytest.raises(KeyError):
        ledger.budget_window(KEY, "bob")


def test_hostile_costs_do_not_reach_a_budget() -> None:
    ledger = Ledger(windows={(KEY, "alice"): BudgetWindow("1d")}, wall=Wall())
    for bad in (-5.0, float("nan"), float("inf"), 1e300):
        ledger.record(paid(bad))
    ledger.record(paid(0.5))
    assert ledger.window_spend(KEY, "alice")[0] == 0.5


async def test_snapshot_shows_the_budget_windows() -> None:
    wall = Wall()
    ledger = Ledger(
        windows={(KEY, "alice"): BudgetWindow("1d"), (TEAM, "blue"): BudgetWindow("1mo")},
        wall=wall,
    )
    ledger.record(paid(1.5))
    snapshot = await ledger.snapshot(Period.HOUR)
    midnight = (T0 // DAY + 1) * DAY
    alice = WindowSpend("1d", f"86400s:{int(T0 // DAY)}", 1.5, midnight - DAY, midnight)
    assert snapshot.budgets[KEY] == {"alice": alice}
    assert snapshot.budgets[TEAM]["blue"].spend_usd == 0.0
    assert snapshot.budgets[TEAM]["blue"].resets_at == at(2027, 1, 1)
    assert ledger.budget_window(KEY, "alice") == alice


async def test_a_memory_snapshot_is_this_process_own() -> None:
    ledger = Ledger(wall=Wall())
    ledger.record(paid(1.0))
    snapshot = await ledger.snapshot(Period.HOUR)
    assert snapshot.shared is False
    assert (snapshot.period, snapshot.period_id, snapshot.start) == (
        Period.HOUR,
        "2026-12-03T10",
        at(2026, 12, 3, 10),
    )
    assert set(snapshot.stats) == set(Dimension)
    total = await ledger.snapshot(Period.TOTAL)
    assert (total.period_id, total.start) == ("all", None)
    assert ledger.status.shared is False


async def test_periods_roll_over_with_the_wall_clock() -> None:
    wall = Wall(at(2026, 12, 31, 22, 30))
    ledger = Ledger(wall=wall)

    async def spend(period: Period) -> float:
        found = (await ledger.snapshot(period)).get(GROUP, "chat")
        return found.spend_usd if found else 0.0

    ledger.record(paid(1.0))
    wall.now = at(2026, 12, 31, 23, 10)
    ledger.record(paid(2.0))
    assert [await spend(p) for p in Period] == [2.0, 3.0, 3.0, 3.0]
    wall.now = at(2027, 1, 1, 0, 5)
    assert [await spend(p) for p in Period] == [0.0, 0.0, 0.0, 3.0]
    ledger.record(paid(4.0))
    assert [await spend(p) for p in Period] == [4.0, 4.0, 4.0, 7.0]
    wall.now = at(2027, 1, 2, 0, 5)
    ledger.record(paid(8.0))
    assert [await spend(p) for p in Period] == [8.0, 8.0, 12.0, 15.0]


async def test_hours_fold_without_a_snapshot() -> None:
    """A memory ledger nobody asks keeps one tally, not one per hour."""
    wall = Wall()
    ledger = Ledger(wall=wall)
    for _ in range(48):
        ledger.record(paid(1.0))
        wall.advance(3600)
    assert len(ledger._fresh) <= 2
    assert (await ledger.snapshot(Period.TOTAL)).get(GROUP, "chat").spend_usd == 48.0  # type: ignore[union-attr]


async def test_a_clock_stepped_back_counts_only_in_the_periods_still_open() -> None:
    wall = Wall(at(2026, 12, 3, 11, 5))
    ledger = Ledger(wall=wall)
    ledger.record(paid(1.0))
    await ledger.snapshot(Period.HOUR)
    wall.now = at(2026, 12, 3, 10, 59)
    ledger.record(paid(2.0))
    wall.now = at(2026, 12, 3, 11, 6)
    hour = await ledger.snapshot(Period.HOUR)
    day = await ledger.snapshot(Period.DAY)
    assert hour.get(GROUP, "chat").spend_usd == 1.0  # type: ignore[union-attr]
    assert day.get(GROUP, "chat").spend_usd == 3.0  # type: ignore[union-attr]


async def test_names_are_bounded_per_dimension() -> None:
    ledger = Ledger(wall=Wall(), max_names=2)
    for key in ("a", "b", "c", "d", "a"):
        ledger.record(paid(1.0, key=key))
    keys = (await ledger.snapshot(Period.DAY)).stats[KEY]
    assert {name: s.requests for name, s in keys.items()} == {"a": 2, "b": 1, OTHER: 2}


async def test_names_utf8_cannot_carry_are_cleaned() -> None:
    ledger = Ledger(wall=Wall())
    ledger.record(paid(1.0, key="caf\udce9", team="équipe"))
    snapshot = await ledger.snapshot(Period.DAY)
    assert list(snapshot.stats[KEY]) == ["caf?"]
    assert list(snapshot.stats[TEAM]) == ["équipe"]


async def test_start_flush_and_close_are_harmless_without_redis() -> None:
    ledger = Ledger(wall=Wall())
    await ledger.start()
    ledger.record(call())
    assert await ledger.flush() is True
    await ledger.aclose()
    assert (await ledger.snapshot(Period.DAY)).get(GROUP, "chat") is not None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"flush_interval_s": 0},
        {"flush_interval_s": float("nan")},
        {"max_pending_fields": 0},
        {"max_names": 0},
    ],
)
def test_nonsense_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        Ledger(**kwargs)  # type: ignore[arg-type]
