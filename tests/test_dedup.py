from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.dedup import WINDOW, Dedup


def test_first_and_repeated_frames() -> None:
    d = Dedup()
    assert d.check("A", 1, 0).new
    assert not d.check("A", 1, 0).new
    assert d.check("B", 1, 0).new  # elevators are independent


def test_out_of_order_within_window_and_gap_reported() -> None:
    d = Dedup()
    d.check("A", 1, 10)
    verdict = d.check("A", 1, 15)
    assert verdict.new and verdict.gap == 4
    assert d.check("A", 1, 12).new  # late, fills the gap
    assert not d.check("A", 1, 12).new
    assert not d.check("A", 1, 15).new


def test_reboot_and_late_frames_of_the_previous_boot() -> None:
    d = Dedup()
    for seq in range(5):
        d.check("A", 1, seq)
    assert d.check("A", 2, 0).new  # reboot: seq restarts
    assert not d.check("A", 1, 3).new  # redelivered frame of the old boot
    assert d.check("A", 1, 5).new  # a frame of the old boot that was never seen
    assert not d.check("A", 2, 0).new


def test_frames_older_than_the_window_pass() -> None:
    d = Dedup()
    d.check("A", 1, 0)
    d.check("A", 1, WINDOW + 10)
    assert d.check("A", 1, 0).new  # cannot be told apart: at-least-once, not loss


@given(st.lists(st.integers(min_value=0, max_value=WINDOW - 1), max_size=200))
def test_each_seq_is_new_exactly_once_within_the_window(seqs: list[int]) -> None:
    d = Dedup()
    news = [s for s in seqs if d.check("A", 7, s).new]
    assert sorted(news) == sorted(set(seqs))


def test_a_seq_far_ahead_costs_no_more_than_the_window() -> None:
    """Any int64 is a valid seq: a jump to near its end must not build a bitmap as long."""
    dedup = Dedup()
    assert dedup.check("A", 1, 5).new
    assert dedup.check("A", 1, 2**62) == (True, 2**62 - 6)
    assert not dedup.check("A", 1, 2**62).new
    for skipped in (2**62 - 1, 2**62 - WINDOW + 1):  # the window below it: not seen yet
        assert dedup.check("A", 1, skipped).new
        assert not dedup.check("A", 1, skipped).new
    assert dedup.check("A", 1, 5).new  # far outside the window: let through


@given(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=WINDOW, max_value=2**63 - 1),
)
def test_boots_and_seqs_at_the_ends_of_int64_stay_apart(boot: int, other: int, seq: int) -> None:
    """Boot and seq share one packed int: neither may spill into the other, nor a boot's
    sign be lost."""
    d = Dedup()
    assert d.check("A", boot, seq).new
    assert not d.check("A", boot, seq).new
    assert d.check("A", boot, seq - 1).new  # below the first frame seen: not seen yet
    if other != boot:
        assert d.check("A", other, seq).new  # a reboot
        assert not d.check("A", boot, seq).new  # the boot before is still known
        assert d.check("A", boot, seq - 2).new
    assert not d.check("A", boot, seq - 1).new
