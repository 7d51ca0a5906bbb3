"""Clock control against a fake pynvml: lock, verify, reset on every way out."""
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench.measure.clocks import ClockControl, ClockError, ClockRequest, sigterm_raises
from tests.fakes import FakeClock, FakeNvml

ROOT = Path(__file__).resolve().parents[2]


def control(nvml, tmp_path, **request):
    clock = FakeClock(tick_s=0.001)
    return ClockControl(nvml, "h", ClockRequest(**{"mode": "lock", **request}), tmp_path, uuid="GPU-aaaa",
                        clock=clock, sleep=clock.advance)


def test_lock_waits_for_the_clock_to_settle_verifies_and_resets(tmp_path):
    nvml = FakeNvml(FakeClock(), settle_after_polls=20)
    with control(nvml, tmp_path, sm_mhz=1410, mem_mhz=1593) as ctl:
        assert nvml.locked_sm == (1410, 1410) and nvml.locked_mem == (1593, 1593)
        assert ctl.observed_mhz() == (1410, 1593)
        assert (tmp_path / "clocks-locked-GPU-aaaa.json").exists()
    assert nvml.locked_sm is None and nvml.locked_mem is None
    assert nvml.calls == ["lock_mem:1593", "lock_sm:1410", "reset_sm", "reset_mem"]
    assert not (tmp_path / "clocks-locked-GPU-aaaa.json").exists()


def test_clocks_are_reset_after_an_exception(tmp_path):
    nvml = FakeNvml(FakeClock())
    with pytest.raises(RuntimeError, match="kernel failed"):
        with control(nvml, tmp_path, sm_mhz=1005):
            raise RuntimeError("kernel failed")
    assert nvml.locked_sm is None and nvml.calls[-1] == "reset_sm"


def test_clocks_are_reset_after_ctrl_c(tmp_path):
    nvml = FakeNvml(FakeClock())
    with pytest.raises(KeyboardInterrupt):
        with control(nvml, tmp_path, sm_mhz=1005):
            raise KeyboardInterrupt
    assert nvml.locked_sm is None


def test_unsupported_clock_is_refused_with_the_valid_list(tmp_path):
    nvml = FakeNvml(FakeClock())
    with pytest.raises(ClockError, match=r"sm_mhz=1500 is not supported; valid: \[1980, 1755, 1410, 1005\]"):
        with control(nvml, tmp_path, sm_mhz=1500):
            pass
    with pytest.raises(ClockError, match=r"mem_mhz=1000 .* valid: \[2619, 1593\]"):
        with control(nvml, tmp_path, mem_mhz=1000):
            pass
    with pytest.raises(ClockError, match=r"valid: \[1410, 1005\]"):  # SM clocks valid at that memory clock
        with control(nvml, tmp_path, sm_mhz=1980, mem_mhz=1593):
            pass
    assert nvml.calls == []  # nothing was touched


def test_no_permission_fails_before_measuring_and_leaves_nothing_locked(tmp_path):
    nvml = FakeNvml(FakeClock(), can_lock=False)
    with pytest.raises(ClockError, match="needs root"):
        with control(nvml, tmp_path, sm_mhz=1410):
            pytest.fail("the body must not run")
    assert nvml.locked_sm is None


def test_a_clock_that_never_settles_is_an_error_and_is_reset(tmp_path):
    nvml = FakeNvml(FakeClock(), settle_after_polls=10**9)
    with pytest.raises(ClockError, match="did not settle"):
        with control(nvml, tmp_path, sm_mhz=1410, settle_timeout_s=0.5):
            pass
    assert nvml.locked_sm is None and "reset_sm" in nvml.calls


def test_observe_mode_touches_nothing(tmp_path):
    nvml = FakeNvml(FakeClock())
    with ClockControl(nvml, "h", ClockRequest(mode="observe"), tmp_path):
        pass
    assert nvml.calls == []


def test_lock_without_a_clock_is_refused(tmp_path):
    with pytest.raises(ClockError, match="sm_mhz"):
        ClockControl(FakeNvml(FakeClock()), "h", ClockRequest(mode="lock"), tmp_path)


def test_a_lock_left_by_a_killed_run_is_reset_by_the_next(tmp_path):
    nvml = FakeNvml(FakeClock())
    first = control(nvml, tmp_path, sm_mhz=1410)
    first.__enter__()  # killed (SIGKILL) before __exit__: the marker stays
    assert nvml.locked_sm == (1410, 1410)
    nvml.calls.clear()
    with control(nvml, tmp_path, sm_mhz=1005):
        assert nvml.calls[0] == "reset_sm"  # recovered before locking anew
        assert nvml.locked_sm == (1005, 1005)
    assert nvml.locked_sm is None


def test_observe_mode_refuses_a_lock_a_killed_run_left_or_resets_it_where_asked(tmp_path):
    nvml = FakeNvml(FakeClock())
    control(nvml, tmp_path, sm_mhz=1410).__enter__()  # killed before __exit__: clocks stay locked
    nvml.calls.clear()
    observe = ClockControl(nvml, "h", ClockRequest(mode="observe"), tmp_path, uuid="GPU-aaaa")
    with pytest.raises(ClockError, match=r"still in force \(SM 1410 MHz.*gpu.clocks.reset_stale=true"):
        observe.__enter__()
    assert nvml.locked_sm == (1410, 1410) and nvml.calls == []  # refused before touching anything
    resetting = ClockControl(nvml, "h", ClockRequest(mode="observe", reset_stale=True), tmp_path, uuid="GPU-aaaa")
    with resetting:
        assert nvml.locked_sm is None and nvml.calls == ["reset_sm"]
    assert not (tmp_path / "clocks-locked-GPU-aaaa.json").exists()
    nvml.calls.clear()
    with ClockControl(nvml, "h", ClockRequest(mode="observe"), tmp_path, uuid="GPU-aaaa") as again:
        assert again.stale_lock() is None and nvml.calls == []  # nothing stale any more, nothing touched


def test_a_marker_cut_short_resets_both_clocks(tmp_path):
    (tmp_path / "clocks-locked-GPU-aaaa.json").write_text('{"pid": 12')
    nvml = FakeNvml(FakeClock())
    with ClockControl(nvml, "h", ClockRequest(mode="observe", reset_stale=True), tmp_path, uuid="GPU-aaaa"):
        assert nvml.calls == ["reset_sm", "reset_mem"]


def test_sigterm_resets_clocks(tmp_path):
    """A real SIGTERM to a process holding a lock: it resets and exits 143."""
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from bench.measure.clocks import ClockControl, ClockRequest, sigterm_raises
        from tests.fakes import FakeClock, FakeNvml
        nvml = FakeNvml(FakeClock())
        try:
            with sigterm_raises(), ClockControl(nvml, "h", ClockRequest(mode="lock", sm_mhz=1410), {str(tmp_path)!r}):
                print("locked", flush=True)
                time.sleep(30)
        finally:
            print("calls", nvml.calls, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 143
    assert "'reset_sm'" in out


def test_sigterm_handler_is_restored():
    before = signal.getsignal(signal.SIGTERM)
    with sigterm_raises():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before
