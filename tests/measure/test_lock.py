"""One job per device: a second holder waits, then fails naming the first."""
import threading
import time

import pytest

from bench.measure.lock import DeviceBusy, device_lock, lock_path
from bench.measure.monitor import gpu_activity
from tests.fakes import FakeClock, FakeNvml


def test_second_job_fails_with_the_holder_named(tmp_path):
    with device_lock(tmp_path, "GPU-aaaa", wait_s=0):
        with pytest.raises(DeviceBusy, match=r"in use by another bench job \(\{\"pid\": \d+.*lock.wait_s"):
            with device_lock(tmp_path, "GPU-aaaa", wait_s=0.2, poll_s=0.05):
                pytest.fail("two jobs held one device")
    with device_lock(tmp_path, "GPU-aaaa", wait_s=0):  # released on exit
        pass


def test_second_job_waits_for_the_first(tmp_path):
    order = []
    held = threading.Event()

    def first():
        with device_lock(tmp_path, "cpu-host", wait_s=0):
            order.append("first in")
            held.set()
            time.sleep(0.3)
            order.append("first out")

    t = threading.Thread(target=first)
    t.start()
    assert held.wait(10)
    with device_lock(tmp_path, "cpu-host", wait_s=5, poll_s=0.02):
        order.append("second in")
    t.join()
    assert order == ["first in", "first out", "second in"]


def test_devices_do_not_share_a_lock(tmp_path):
    with device_lock(tmp_path, "GPU-aaaa", wait_s=0), device_lock(tmp_path, "GPU-bbbb", wait_s=0):
        pass
    assert lock_path(tmp_path, "GPU-a/b c").name == "GPU-a_b_c.lock"


def test_gpu_activity_reports_utilisation_and_other_processes():
    busy = gpu_activity(FakeNvml(FakeClock(), utilization_pct=37, processes=(111, 222)), "h", own_pid=222,
                        sleep=lambda s: None)
    assert busy.busy and busy.utilization_pct_max == 37 and busy.other_pids == (111,)
    idle = gpu_activity(FakeNvml(FakeClock()), "h", own_pid=1, sleep=lambda s: None)
    assert not idle.busy and idle.other_pids == ()
