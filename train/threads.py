"""CPU threads for training: how many at the start, and a tuner for machines that other programs share.

PyTorch's CPU ops split their work among OpenMP threads and wait for all of them to finish. When another program
keeps one core busy, every op of a 2-thread process waits until the operating system schedules the thread that
lost its core. Measured on a 2-core machine with one core taken, a quickstart step took about 11 s with 2 threads
and 0.3 s with 1 thread. On the same machine idle, 2 threads are the faster (about 1.7x).

So with `num_threads: 0` (auto) on a CPU, `ThreadTuner` times a few steps with one thread, then tries all cores.
It abandons a trial at once when a step takes more than `give_up` times the one-thread time, so a busy machine
costs one slow step. It keeps the faster count and tries the other again later, at intervals that double while
the choice holds. An explicit `--num-threads N` is left alone. Pass one for runs that must be bitwise
reproducible: the thread count can change the order of float sums.
"""

import os
import statistics
import time

import torch


def available_cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def set_cpu_threads(requested, *, device):
    """Threads for CPU ops. `accelerate launch` exports OMP_NUM_THREADS=1 unless told otherwise, which would leave
    all but one core idle; 0 means the cores shared among the processes on this machine. Returns the count."""
    if device.type != "cpu":
        return torch.get_num_threads()
    threads = requested or max(1, available_cores() // int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
    torch.set_num_threads(threads)
    return threads


class ThreadTuner:
    """Picks 1 or `threads` CPU threads by timing optimizer steps; call `step_done()` after each step.

    A round times `probe` steps with one thread, then `probe` with all cores (the first step after each change is
    a warm-up, not compared), and keeps the faster. Rounds run at the start and then after `first_check` steps,
    an interval that doubles each time a round confirms the choice.
    """

    def __init__(self, *, threads, probe=4, first_check=100, give_up=3.0):
        assert probe >= 2, "a round needs a warm-up step and at least one timed step per thread count"
        self.all_cores = threads
        self.probe, self.give_up, self.interval = probe, give_up, first_check
        self.best = None  # the count chosen by the last round
        self.trial = 1  # the count being timed, None between rounds
        self.times = {1: [], threads: []}
        self.steps, self.next_round, self.last = 0, None, None

    def start(self):
        torch.set_num_threads(self.trial)
        self.last = time.perf_counter()

    def restart_timer(self):
        """Validation or checkpointing just happened: don't count it in the next step's time."""
        self.last = time.perf_counter()

    def step_done(self):
        """Record the step that just ended; returns the thread count for the next one."""
        now = time.perf_counter()
        seconds, self.last = now - self.last, now
        self.steps += 1
        if self.trial is not None:
            self.record(seconds)
        elif self.steps >= self.next_round:
            self.begin_trial(1)
        threads = self.trial or self.best
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
        self.last = time.perf_counter()
        return threads

    def begin_trial(self, threads):
        self.trial = threads
        self.times[threads] = []

    def record(self, seconds):
        times = self.times[self.trial]
        times.append(seconds)
        if self.trial == 1:
            if len(times) > self.probe:
                self.begin_trial(self.all_cores)
            return
        one_thread = statistics.median(self.times[1][1:])
        if seconds > self.give_up * one_thread:
            self.finish(best=1)  # all cores are far slower (a busy machine): one slow step is enough to know
        elif len(times) > self.probe:
            self.finish(best=self.all_cores if statistics.median(times[1:]) < one_thread else 1)

    def finish(self, *, best):
        if self.best is not None and best == self.best:
            self.interval *= 2
        self.best, self.trial = best, None
        self.next_round = self.steps + self.interval
