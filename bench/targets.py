"""The targets of issue 12 point 2, as checks over one run's p50s.

A missed target is "out of reach here" only when its floor (the sandboxed bare protocol; for
output, a bare read of the pipe into a file) misses it too by more than the noise: its best
repeat median against the target, or against the worst repeat median of the side it is compared
with (``Figures.span``; two repeats at least).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from bench.cost_rows import ALL_CPU, CORES, ceiling_target
from bench.floor_rows import BARE, BARE_SANDBOX
from bench.memory_rows import DEAD, PEAK
from bench.rows import (
    CPU_SLEEP,
    CPU_TASK,
    EXIT_NOTICED,
    IDLE_CPU,
    IDLE_RSS,
    IDLE_THREADS,
    KEPT_LOG_FLOOR,
    OUTPUT,
    OUTPUT_LEFT,
    OUTPUT_RSS,
    PICKUP_SQS,
    TPUT,
    WRAPPER,
)
from bench.spawn_rows import TINY_ADDS, WRAPPER_ADDS
from bench.stats import Figures, Target


def _p(figures: Figures, measure: str, side: str = "executor") -> float | None:
    return figures.p50(measure, side)


def _pickup(f: Figures) -> tuple[bool | None, str]:
    mine, floor, celery = _p(f, PICKUP_SQS), _p(f, PICKUP_SQS, "floor"), _p(f, PICKUP_SQS, "celery")
    if mine is None or floor is None or celery is None:
        return None, "-"
    bare, boxed = _p(f, PICKUP_SQS, BARE), _p(f, PICKUP_SQS, BARE_SANDBOX)
    text = f"{mine:.1f} ms; floor {floor:.1f}, Celery {celery:.1f}"
    text += "" if bare is None else f", the protocol done bare {bare:.1f}"
    text += "" if boxed is None else f", the protocol + the sandbox done bare {boxed:.1f}"
    return mine <= floor + 10 and mine < celery, text


def _pickup_floor(f: Figures) -> str | None:
    """The sandboxed bare protocol's pickup, when even its best repeat misses the target against
    the others' worst (the bare parent's + 10 ms, Celery's)."""
    boxed, floor = f.span(PICKUP_SQS, BARE_SANDBOX), f.span(PICKUP_SQS, "floor")
    celery, at, mine = f.span(PICKUP_SQS, "celery"), _p(f, PICKUP_SQS, BARE_SANDBOX), _p(f, PICKUP_SQS)
    if boxed is None or floor is None or celery is None or at is None or mine is None:
        return None
    if boxed[0] <= floor[1] + 10 and boxed[0] < celery[1]:
        return None
    return (f"the protocol with the sandbox, done bare, picks up in {at:.1f} ms (best repeat "
            f"{boxed[0]:.1f}); the executor {mine - at:+.1f} ms above it")


def _throughput(workers: int) -> Target:
    def check(f: Figures) -> tuple[bool | None, str]:
        mine, celery = _p(f, TPUT.format(workers)), _p(f, TPUT.format(workers), "celery")
        if mine is None or celery is None:
            return None, "-"
        bare, boxed = _p(f, TPUT.format(workers), BARE), _p(f, TPUT.format(workers), BARE_SANDBOX)
        extra = "" if bare is None else f"; the protocol done bare {bare:.1f}"
        extra += "" if boxed is None else f", with the sandbox {boxed:.1f}"
        return mine >= celery, f"{mine:.1f} vs Celery {celery:.1f} tasks/s{extra}"

    def floor(f: Figures) -> str | None:
        measure = TPUT.format(workers)
        boxed, celery = f.span(measure, BARE_SANDBOX), f.span(measure, "celery")
        at, mine = _p(f, measure, BARE_SANDBOX), _p(f, measure)
        if boxed is None or celery is None or at is None or mine is None or boxed[1] >= celery[0]:
            return None
        return (f"the protocol with the sandbox, done bare in {workers} loops, runs {at:.1f} tasks/s "
                f"(best repeat {boxed[1]:.1f}); the executor {mine - at:+.1f} tasks/s from it")

    return Target(f"trivial-task throughput >= Celery's, {workers} worker(s)", check, floor)


def _ceiling(workers: int) -> Target:
    """``ceiling_target``, out of reach when the sandboxed bare protocol's CPU per task (every
    process) at Celery's rate needs more than these cores too."""

    def floor(f: Figures) -> str | None:
        measure = ALL_CPU.format(workers)
        cpu, celery = f.span(measure, BARE_SANDBOX), f.span(TPUT.format(workers), "celery")
        at, mine = _p(f, measure, BARE_SANDBOX), _p(f, measure)
        if cpu is None or celery is None or at is None or mine is None or cpu[0] / 1000 * celery[0] <= CORES:
            return None
        return (f"the protocol with the sandbox, done bare, costs {at:.0f} ms of CPU per task (best "
                f"repeat {cpu[0]:.0f}: {cpu[0] / 1000 * celery[0]:.2f} cores at Celery's slowest rate); "
                f"the executor {mine - at:+.0f} ms above it")

    return replace(ceiling_target(workers), floor=floor)


def _below(measure: str, limit: float, unit: str, side: str = "executor") -> Target:
    def check(f: Figures) -> tuple[bool | None, str]:
        value = _p(f, measure, side)
        return (None, "-") if value is None else (value < limit, f"{value:.2f} {unit}")

    return Target(f"{measure} ({side}) < {limit:g} {unit}", check)


def _above(measure: str, limit: float, unit: str) -> Target:
    def check(f: Figures) -> tuple[bool | None, str]:
        value = _p(f, measure)
        return (None, "-") if value is None else (value >= limit, f"{value:.0f} {unit}")

    return Target(f"{measure} >= {limit:g} {unit}", check, _output_floor(measure, limit, unit))


def _output_floor(measure: str, limit: float, unit: str) -> Callable[[Figures], str | None]:
    """Out of reach when even the best repeat of a process that only reads the pipe into a file
    (no masking, no Python per line) stays under the limit on this machine's disk."""

    def floor(f: Figures) -> str | None:
        kept, at, mine = f.span(measure, KEPT_LOG_FLOOR), _p(f, measure, KEPT_LOG_FLOOR), _p(f, measure)
        if kept is None or at is None or mine is None or kept[1] >= limit:
            return None
        return (f"a bare read of the pipe into a file does {at:.0f} {unit} (best repeat {kept[1]:.0f}); "
                f"the executor {mine / at:.2f}x of it")

    return floor


def _noticed(f: Figures) -> tuple[bool | None, str]:
    """The stand-in stamps its exit before its interpreter's teardown; the floor (a bare parent's
    ``wait()``) measures that teardown, so the executor's own share is what lies above it."""
    mine, floor = _p(f, EXIT_NOTICED), _p(f, EXIT_NOTICED, "floor")
    if mine is None or floor is None:
        return None, "-"
    return mine - floor < 5, f"{mine - floor:+.1f} ms over the bare parent's reap ({floor:.1f} ms)"


def _wrapper(f: Figures) -> tuple[bool | None, str]:
    """Read from the paired, quiet rows (``bench.spawn_rows``) when they were taken: the pickup
    rows' figure compares a start-up beside a busy executor and control plane with a quiet one,
    and its repeats spread more than the target; it is shown beside them."""
    mine, floor = _p(f, WRAPPER), _p(f, WRAPPER, "floor")
    live = None
    if mine is not None and floor is not None:
        live = f"{mine - floor:+.1f} ms over the bare start-up ({floor:.1f} ms)"
    adds, tiny, span = _p(f, WRAPPER_ADDS), _p(f, TINY_ADDS), f.span(WRAPPER_ADDS, "executor")
    if adds is None:
        return (None, "-") if mine is None or floor is None or live is None else (mine - floor < 5, live)
    text = f"{adds:+.1f} ms paired over a bare spawn of the same CLI, quiet"
    text += "" if span is None else f" (repeats {span[0]:+.1f} to {span[1]:+.1f})"
    text += "" if tiny is None else f"; {tiny:+.1f} ms to /bin/true's"
    text += "" if live is None else f"; in the pickup rows {live}"
    return adds < 5, text


def _cpu_per_task(f: Figures) -> tuple[bool | None, str]:
    """The executor's CPU per task, beside the price of the protocol itself (``bench.protocol_floor``:
    the same GMS and SQS calls and durable result, done bare): what no executor of it goes under."""
    mine, bare, boxed = _p(f, CPU_TASK), _p(f, CPU_TASK, BARE), _p(f, CPU_TASK, BARE_SANDBOX)
    if mine is None:
        return None, "-"
    text = f"{mine:.2f} ms" + ("" if bare is None else f"; the protocol done bare {bare:.2f} ms")
    text += "" if boxed is None else f", with the sandbox {boxed:.2f} ms"
    return mine < 5, text


def _cpu_floor(f: Figures) -> str | None:
    """The sandboxed bare protocol's own CPU per task, when even its best repeat is 5 ms or more."""
    boxed, at, mine = f.span(CPU_TASK, BARE_SANDBOX), _p(f, CPU_TASK, BARE_SANDBOX), _p(f, CPU_TASK)
    if boxed is None or at is None or mine is None or boxed[0] < 5:
        return None
    return (f"the protocol with the sandbox, done bare, costs {at:.2f} ms (best repeat {boxed[0]:.2f}); "
            f"the executor {mine - at:+.2f} ms above it")


def _idle_cpu(f: Figures) -> tuple[bool | None, str]:
    """One pool's executor at rest, beside the protocol done bare at rest (``bench.protocol_floor``:
    its long poll and its presence record, nothing else): what no runner of the protocol idles under."""
    mine, bare = _p(f, IDLE_CPU.format(1)), _p(f, IDLE_CPU.format(1), BARE)
    if mine is None:
        return None, "-"
    return mine < 0.1, f"{mine:.2f} %" + ("" if bare is None else f"; the protocol done bare {bare:.2f} %")


def _idle_floor(f: Figures) -> str | None:
    """Out of reach when even the bare protocol's best repeat at rest is 0.1 % or more (on this
    machine a wake-up after a long sleep costs milliseconds: ``bench.idle_wakes``)."""
    row = IDLE_CPU.format(1)
    bare, at, mine = f.span(row, BARE), _p(f, row, BARE), _p(f, row)
    if bare is None or at is None or mine is None or bare[0] < 0.1:
        return None
    return (f"the protocol done bare idles at {at:.2f} % (best repeat {bare[0]:.2f}); "
            f"the executor {mine / at:.2f}x of it")


def _sleeping_cpu(f: Figures) -> tuple[bool | None, str]:
    """The executor while 4 recipes sleep, beside the protocol done bare with its sandbox and the
    same four runs (``bench.sleep_floor``: the KILL reads, RUNNING, the lease, a look a second)."""
    mine, boxed = _p(f, CPU_SLEEP), _p(f, CPU_SLEEP, BARE_SANDBOX)
    if mine is None:
        return None, "-"
    text = f"{mine:.2f} %" + ("" if boxed is None else f"; the protocol + the sandbox, bare, {boxed:.2f} %")
    return mine < 0.8, text


def _sleeping_floor(f: Figures) -> str | None:
    """Out of reach when even the bare loop's best repeat with four runs asleep is 0.8 % or more:
    its duties' wake-ups at this machine's price for one (``bench.idle_wakes``)."""
    boxed, at, mine = f.span(CPU_SLEEP, BARE_SANDBOX), _p(f, CPU_SLEEP, BARE_SANDBOX), _p(f, CPU_SLEEP)
    if boxed is None or at is None or mine is None or boxed[0] < 0.8:
        return None
    return (f"the protocol + the sandbox done bare, four runs asleep, costs {at:.2f} % (best repeat "
            f"{boxed[0]:.2f}); the executor {mine / at:.2f}x of it")


def _per_pool(f: Figures) -> tuple[bool | None, str]:
    one, four = _p(f, IDLE_RSS.format(1)), _p(f, IDLE_RSS.format(4))
    if one is None or four is None:
        return None, "-"
    return (four - one) / 3 <= 3, f"{(four - one) / 3:+.1f} MB per extra pool"


def _threads(pools: int) -> Target:
    def check(f: Figures) -> tuple[bool | None, str]:
        value = _p(f, IDLE_THREADS.format(pools))
        return (None, "-") if value is None else (value <= 8 + 2 * pools, f"{value:.0f} threads")

    return Target(f"idle threads with {pools} pool(s) <= {8 + 2 * pools}", check)


TARGETS = [
    Target("pickup p50 <= floor + 10 ms and below Celery's", _pickup, _pickup_floor),
    Target("recipe exit -> result noticed < 5 ms over a bare parent's reap", _noticed),
    _throughput(1),
    _throughput(4),
    ceiling_target(1),
    _ceiling(4),
    Target(f"{CPU_TASK} (executor) < 5 ms", _cpu_per_task, _cpu_floor),
    Target("the exec wrapper adds < 5 ms of CPU", _wrapper),
    Target(f"{CPU_SLEEP} (executor) < 0.8 %", _sleeping_cpu, _sleeping_floor),
    _below(IDLE_RSS.format(1), 60, "MB"),
    Target("idle RSS +3 MB at most per extra pool", _per_pool),
    _threads(1),
    _threads(4),
    Target(f"{IDLE_CPU.format(1)} (executor) < 0.1 %", _idle_cpu, _idle_floor),
    _above(OUTPUT.format(1024), 1000, "MB/s"),
    _above(OUTPUT.format(128), 300, "MB/s"),
    _below(OUTPUT_RSS.format(1024), 10, "MB"),
    _below(OUTPUT_LEFT.format(1024), 1, "MB"),
    _below(OUTPUT_LEFT.format(128), 1, "MB"),
    _below(DEAD, 100, "ms", "psutil only"),
    _below(PEAK, 1.25, "x", "psutil only, SIGTERM ignored"),
]
