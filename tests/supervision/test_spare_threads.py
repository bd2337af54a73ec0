"""Spare threads: a job runs on a thread a finished job left waiting, else on a new one."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator

import pytest

from executor.supervision.spare_threads import SPARE_NAME, Job, SpareThreads
from executor.supervision.strand import Strand, current_strand
from executor.supervision.strandactor import StrandActor
from tests.supervision.probe import wait_for

MARK: contextvars.ContextVar[str] = contextvars.ContextVar("MARK", default="unset")


@pytest.fixture
def spares() -> Iterator[SpareThreads]:
    """Long lingers: a thread that ends did so because it was let go, not because it waited."""
    threads = SpareThreads(linger_s=30.0, max_spare=2)
    yield threads
    threads.let_go()  # closes it: a job that ends after this ends its thread too


def _wait_ended(threads: list[threading.Thread]) -> None:
    wait_for(lambda: not any(t.is_alive() for t in threads), what="the spare threads to end")


def _ran_on(spares: SpareThreads, name: str) -> tuple[int, str, str]:
    """Run one job; (its thread's id, its Python name while it ran, the contextvar it saw)."""
    seen: list[tuple[int, str, str]] = []

    def job() -> None:
        seen.append((threading.get_ident(), threading.current_thread().name, MARK.get()))
        MARK.set(name)  # must not leak into the next job on this thread

    handle = spares.start(job, name, "job")
    assert handle.join(30) and not handle.is_alive()
    return seen[0]


def test_a_job_after_another_runs_on_the_thread_it_left_waiting(spares: SpareThreads) -> None:
    first, first_name, _ = _ran_on(spares, "job-one")
    wait_for(lambda: spares.waiting() == 1, what="the thread to wait for more work")
    second, second_name, mark = _ran_on(spares, "job-two")
    assert first == second and spares.threads_made == 1
    assert (first_name, second_name) == ("job-one", "job-two")
    assert mark == "unset", "each job runs in a context of its own"
    wait_for(lambda: spares.waiting() == 1, what="the thread to wait again")
    waiting = [t for t in threading.enumerate() if t.ident == first]
    assert waiting and waiting[0].name == SPARE_NAME


def test_a_waiting_thread_ends_after_its_linger() -> None:
    spares = SpareThreads(linger_s=0.05)
    ident, _, _ = _ran_on(spares, "short")
    wait_for(lambda: not [t for t in threading.enumerate() if t.ident == ident],
             what="the spare thread to end after its linger")
    assert spares.waiting() == 0
    _ran_on(spares, "later")
    assert spares.threads_made == 2, "the ended thread was not handed the job"


def test_at_most_max_spare_threads_wait(spares: SpareThreads) -> None:
    gate = threading.Event()
    threads: list[threading.Thread] = []

    def held() -> None:
        threads.append(threading.current_thread())
        gate.wait()

    jobs = [spares.start(held, f"held-{i}") for i in range(4)]
    gate.set()
    assert all(job.join(30) for job in jobs)
    wait_for(lambda: spares.waiting() == 2 and sum(t.is_alive() for t in threads) == 2,
             what="two threads to wait, the others to end")
    assert spares.threads_made == 4
    spares.let_go()
    _wait_ended(threads)
    assert spares.waiting() == 0


def test_a_job_ending_after_let_go_ends_its_thread(spares: SpareThreads) -> None:
    gate = threading.Event()
    threads: list[threading.Thread] = []

    def held() -> None:
        threads.append(threading.current_thread())
        gate.wait()

    job = spares.start(held, "held")
    wait_for(lambda: bool(threads), what="the job to run")
    spares.let_go()  # the executor stops while a job still runs
    gate.set()
    assert job.join(30)
    _wait_ended(threads)  # at once: the linger is 30 s
    assert spares.waiting() == 0
    spares.open()  # another executor starts: threads wait again
    _ran_on(spares, "reopened")
    wait_for(lambda: spares.waiting() == 1, what="the thread to wait after a reopen")


def test_a_failing_job_leaves_its_thread_usable(spares: SpareThreads) -> None:
    def boom() -> None:
        raise RuntimeError("a job's own failure")

    assert spares.start(boom, "boom").join(30)
    wait_for(lambda: spares.waiting() == 1, what="the thread to wait after the failure")
    _ran_on(spares, "after")
    assert spares.threads_made == 1


class _Echo(StrandActor):
    def on_receive(self, message: object) -> object:
        return (message, threading.current_thread().name)


def test_a_strand_on_a_spare_thread_leaves_no_strand_behind(spares: SpareThreads) -> None:
    strand = Strand("root/pool:p/task:abc", "task:abc", spare=spares)
    ref = _Echo.start(strand)
    assert ref.ask("hi", timeout=30) == ("hi", "root/pool:p/task:abc")
    ref.stop(timeout=30)
    wait_for(lambda: spares.waiting() == 1, what="the strand's thread to be given back")
    seen: list[object] = []
    assert spares.start(lambda: seen.append(current_strand()), "next").join(30)
    assert seen == [None] and spares.threads_made == 1


def test_many_short_jobs_with_a_tiny_linger_each_run_once() -> None:
    """A linger of 1 ms and two starters: a thread's wait often ends just as a starter hands it
    a job (took it off the idle list as its wait timed out); the job must still run, once."""
    spares = SpareThreads(linger_s=0.001, max_spare=4)
    threads: set[threading.Thread] = set()
    runs = [0] * 2000
    late: list[int] = []

    def starter(first: int) -> None:
        for n in range(first, len(runs), 2):
            def job(n: int = n) -> None:
                threads.add(threading.current_thread())
                runs[n] += 1

            if not spares.start(job, f"short-{n}").join(30):
                late.append(n)

    starters = [threading.Thread(target=starter, args=(first,)) for first in (0, 1)]
    try:
        for thread in starters:
            thread.start()
        for thread in starters:
            thread.join(120)
        assert not any(thread.is_alive() for thread in starters), "the jobs did not all finish"
    finally:
        spares.let_go()
    assert not late and runs == [1] * len(runs)
    _wait_ended(list(threads))
    assert spares.waiting() == 0


def test_a_job_started_following_runs_on_its_thread_once_the_job_has_ended(
        spares: SpareThreads) -> None:
    """``following``: no second thread is woken; the follow-up runs after the job has ended
    (whoever joins the job is free first), then the thread waits for work as usual."""
    order: list[str] = []
    idents: list[int] = []
    outer: list[Job] = []

    def then() -> None:
        idents.append(threading.get_ident())
        order.append("then, the job ended" if not outer[0].is_alive() else "then, the job alive")

    def job() -> None:
        assert go.wait(30)
        idents.append(threading.get_ident())
        with spares.following():
            follow.append(spares.start(then, "then", "then"))
        order.append("job")

    follow: list[Job] = []
    go = threading.Event()
    outer.append(spares.start(job, "job", "job"))
    go.set()
    assert outer[0].join(30) and follow and follow[0].join(30)
    assert order == ["job", "then, the job ended"]
    assert idents[0] == idents[1] and spares.threads_made == 1
    wait_for(lambda: spares.waiting() == 1, what="the thread to wait after the follow-up")


def test_following_elsewhere_starts_a_job_as_usual(spares: SpareThreads) -> None:
    """Off a spare thread (here the test's own), or outside the block, a job starts at once on a
    spare thread."""
    ran: list[int] = []
    with spares.following():
        job = spares.start(lambda: ran.append(threading.get_ident()), "usual")
    assert job.join(30) and ran and ran[0] != threading.get_ident()
