"""`task=measure` and the resume key: a point another job measured while this one waited for the
device is not measured again; an upgrade of the software that runs kernels measures anew."""
import dataclasses
import json
import socket
import threading
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from bench.cli.schema import to_typed
from bench.cli.store import register_configs
from bench.measure import environment
from bench.measure.lock import device_lock
from bench.measure.results import ResultsStore, point_key
from bench.tasks import measure

real_setup = measure.setup_of

CONF = Path(__file__).resolve().parents[2] / "conf"
register_configs()


@pytest.fixture
def cfg(tmp_path):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return to_typed(compose("config", overrides=[
            "kernel=decode.torch", "device=cpu", "batch_size=2", "heads=4", "kv_heads=2", "head_dim=32",
            "context_len=64", "meter.host=model", "measure.trials=2", "measure.min_window_s=0.02",
            "measure.warmup_s=0", f"results_dir={tmp_path / 'results'}", f"lock.dir={tmp_path / 'locks'}"]))


@pytest.mark.realtime  # a 0.5 s sleep stands for "the waiter got to the lock"
def test_a_point_measured_while_this_job_waited_for_the_device_is_not_measured_again(cfg, monkeypatch):
    key = point_key(measure.identity_of(cfg))
    store = ResultsStore(cfg.results_dir)
    built = []
    monkeypatch.setattr(measure.Case, "build", lambda *a, **k: built.append(1) or (lambda: None), raising=False)
    returned = []
    with device_lock(cfg.lock.dir, f"cpu-{socket.gethostname()}", wait_s=0):  # another job measures
        waiter = threading.Thread(target=lambda: returned.append(measure.run(cfg)))
        waiter.start()
        time.sleep(0.5)  # the waiter passed the first check (nothing stored yet) and waits for the lock
        assert waiter.is_alive() and not returned
        store.write({"key": key, "quality": "ok", "measured_by": "the other job"})
    waiter.join(30)
    assert returned and returned[0]["measured_by"] == "the other job"
    assert not built  # nothing built, nothing measured
    assert json.loads((store.points_dir / f"{key}.json").read_text())["measured_by"] == "the other job"


def test_of_two_jobs_started_together_on_one_point_one_measures_and_the_other_skips(cfg, monkeypatch):
    from bench.measure import session

    measured = []
    real = session.measure_point
    monkeypatch.setattr(session, "measure_point", lambda *a, **k: measured.append(1) or real(*a, **k))
    # The waiter polls the lock every millisecond, so it would take it in any gap between release and store.
    monkeypatch.setattr(measure, "setup_of", lambda c, d: dataclasses.replace(
        real_setup(c, d), lock=dataclasses.replace(real_setup(c, d).lock, wait_s=60, poll_s=0.001)))
    rows = []
    jobs = [threading.Thread(target=lambda: rows.append(measure.run(cfg))) for _ in range(2)]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(60)
    assert len(measured) == 1 and len(rows) == 2 and rows[0]["key"] == rows[1]["key"]
    assert len(list(ResultsStore(cfg.results_dir).points_dir.glob("*.json"))) == 1


def test_software_versions_are_part_of_the_key(cfg, monkeypatch):
    before = point_key(measure.identity_of(cfg))
    assert measure.identity_of(cfg)["software"]["torch"] == environment.torch.__version__
    monkeypatch.setattr(environment, "software", lambda device: {"torch": "9.9.9", "triton": "absent"})
    assert point_key(measure.identity_of(cfg)) != before
