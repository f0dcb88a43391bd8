"""The CPU thread tuner keeps whichever thread count makes steps faster, and gives up fast on a busy machine."""

import pytest
import torch

from train import threads as threads_module
from train.threads import ThreadTuner


@pytest.fixture(autouse=True)
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


class FakeClock:
    """Each step takes `cost(threads, step)` seconds of the clock."""

    def __init__(self, cost):
        self.cost, self.now, self.step_index = cost, 0.0, 0

    def __call__(self):
        return self.now

    def step(self):
        self.now += self.cost(torch.get_num_threads(), self.step_index)
        self.step_index += 1


def run_tuner(monkeypatch, cost, steps, **options):
    clock = FakeClock(cost)
    monkeypatch.setattr(threads_module.time, "perf_counter", clock)
    tuner = ThreadTuner(threads=2, **options)
    tuner.start()
    used = []
    for _ in range(steps):
        used.append(torch.get_num_threads())
        clock.step()
        tuner.step_done()
    return used


def test_an_idle_machine_ends_up_on_all_cores(monkeypatch):
    used = run_tuner(monkeypatch, lambda threads, step: {1: 1.0, 2: 0.6}[threads], 40, probe=3, first_check=10)
    # A round: 4 steps with one thread (the first a warm-up), 4 with two, then the faster until the next round
    # (after 10 steps, then 20 once it confirmed the choice).
    assert used[:8] == [1, 1, 1, 1, 2, 2, 2, 2]
    assert used[8:18] == [2] * 10
    assert used[18:26] == [1, 1, 1, 1, 2, 2, 2, 2]
    assert used[26:40] == [2] * 14


def test_a_busy_machine_costs_one_slow_step_per_round(monkeypatch):
    used = run_tuner(monkeypatch, lambda threads, step: {1: 1.0, 2: 20.0}[threads], 30, probe=3, first_check=10)
    assert used[:5] == [1, 1, 1, 1, 2]  # the first 2-thread step takes 20x: back to one thread at once
    assert used[5:15] == [1] * 10
    assert used[15:20] == [1, 1, 1, 1, 2]
    assert used[20:30] == [1] * 10


def test_the_tuner_follows_a_machine_that_becomes_busy(monkeypatch):
    used = run_tuner(
        monkeypatch,
        lambda threads, step: 0.6 if threads == 2 and step < 15 else {1: 1.0, 2: 9.0}[threads],
        40,
        probe=3,
        first_check=10,
    )
    assert used[8] == 2 and used[18:23] == [1, 1, 1, 1, 2] and used[23:33] == [1] * 10
