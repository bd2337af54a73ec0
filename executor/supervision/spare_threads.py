"""Threads that wait a moment after their work, so a task's short-lived threads are not made anew.

Every task used to start three threads and see them end a few tens of milliseconds later: its
Task's strand, its sandbox's supervisor and its output reader. A thread start costs about
0.2 ms of CPU (the clone, its stack, and ``Thread.start``'s hand-shake: the starter sleeps
until the new thread has run), and the three ended between two tasks of a busy pool. Here a
thread whose work is done waits ``LINGER_S`` for the next one (an uncontended lock, handed
over by whoever starts work), so back-to-back tasks run on threads already there; a pool at
rest has none left after ``LINGER_S``, and at most ``MAX_SPARE`` wait at once. Once let go
(the executor stopped) no thread waits any more, not even one whose job ends later; ``open``
(an executor's start) lets them wait again.

A job is named on its thread (``name_this_thread``: Python's name and the kernel's) and runs
in a fresh ``contextvars`` context; a waiting thread is named ``spare``. Workers are daemon
threads: nothing waits for them at exit (the executor's stop waits for its actors' loops and
its runs' results, not for threads). Whoever uses one must leave no thread-local state behind
(``Strand`` clears its own).

Work that may start only as a job ends (the warm spare made at a run's end, that spare's own
supervisor after its making) is started inside ``following``: it then runs on the same thread
right after the job, instead of waking a second thread that would run beside the first one's
end (each hand-over is a wake-up of both, and two threads at once pass the interpreter lock to
and fro: session 20 took about 10 of a trivial task's 70 wake-ups away so).
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections import deque
from collections.abc import Callable, Iterator

from loguru import logger

from executor.supervision.threadnames import name_this_thread

LINGER_S = 2.0
"""How long a thread waits for new work after its last; the next task of a busy pool comes sooner."""
MAX_SPARE = 8
"""At most this many threads wait at once (a burst of ended tasks does not keep them all)."""
SPARE_NAME = "spare"


class Job:
    """One piece of work on a spare thread: what a ``threading.Thread`` gives its starter."""

    def __init__(self, target: Callable[[], object], name: str, comm: str | None) -> None:
        self.target: Callable[[], object] | None = target
        self.name = name
        self.comm = comm
        self.ident: int | None = None
        """The thread's id once the job runs (``Thread.ident``)."""
        self._done = threading.Event()

    def is_alive(self) -> bool:
        """True from the start until the job has returned (as ``Thread.is_alive`` after ``start``)."""
        return not self._done.is_set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the job to return; True once it has."""
        return self._done.wait(timeout)

    def run(self) -> None:
        """On the worker: the job, named, in a context of its own; never raises."""
        self.ident = threading.get_ident()
        target, self.target = self.target, None  # as ``Thread`` drops its target: whoever holds
        try:  # the job (its owner) must not keep the target's object alive through it
            assert target is not None, "a job runs once"
            name_this_thread(self.name, self.comm)
            contextvars.Context().run(target)
        except Exception:
            logger.exception("thread {} failed", self.name)
        finally:
            del target
            self._done.set()


class _Worker:
    """One thread: runs a job, then its follow-ups (``SpareThreads.following``), then waits for
    the next one or for ``LINGER_S`` to pass."""

    def __init__(self, spares: SpareThreads) -> None:
        self.spares = spares
        self.gate = threading.Lock()
        self.gate.acquire()
        self.job: Job | None = None
        self.follow: list[Job] | None = None
        """Where jobs started inside ``following`` go while this worker runs a job."""

    def loop(self, first: Job) -> None:
        job: Job | None = first
        queued: deque[Job] = deque()
        _local.worker = self
        try:
            while job is not None:
                self.follow = []
                try:
                    job.run()
                finally:  # a job's follow-ups run after it, in order, even after one that died
                    queued.extend(self.follow)
                    self.follow = None
                job = queued.popleft() if queued else self.spares.next_job(self)
        finally:
            _local.worker = None
            for job in queued:  # the thread dies (a BaseException): they go to other threads
                self.spares._start(job)


class SpareThreads:
    """Starts jobs on a waiting thread when one waits, else on a new one (see the module doc)."""

    def __init__(self, linger_s: float = LINGER_S, max_spare: int = MAX_SPARE) -> None:
        self.linger_s = linger_s
        self.max_spare = max_spare
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._users = 0
        """Executors open on it (``open``); the last one's ``let_go`` closes it."""
        self._closed = False
        """Let go: a finished job's thread ends instead of waiting (no task is coming)."""
        self.threads_made = 0

    def start(self, target: Callable[[], object], name: str, comm: str | None = None) -> Job:
        """Run ``target`` on a thread named ``name`` (``comm`` for the kernel); returns at once.
        Inside ``following`` on a spare thread: on this thread, once its current job has ended."""
        job = Job(target, name, comm)
        worker: _Worker | None = getattr(_local, "worker", None)
        if (worker is not None and worker.spares is self and worker.follow is not None
                and getattr(_local, "following", False)):
            worker.follow.append(job)
        else:
            self._start(job)
        return job

    def _start(self, job: Job) -> None:
        """``job`` on a waiting thread, else on a new one."""
        with self._lock:
            worker = self._idle.pop() if self._idle else None  # the latest: its stack is warm
            if worker is not None:
                worker.job = job
        if worker is not None:
            worker.gate.release()
            return
        worker = _Worker(self)
        thread = threading.Thread(target=worker.loop, args=(job,), name=job.name, daemon=True)
        thread.start()
        with self._lock:
            self.threads_made += 1

    @staticmethod
    @contextlib.contextmanager
    def following() -> Iterator[None]:
        """Jobs started inside this block on a spare thread follow its current job on the same
        thread (after it has ended, before the thread waits for work) instead of waking another:
        for work that may start only as the job ends, where a hand-over to a second thread
        would cost a wake-up of both and let the two run at the same moment. Elsewhere (not a
        spare thread) a job starts as usual."""
        before = getattr(_local, "following", False)
        _local.following = True
        try:
            yield
        finally:
            _local.following = before

    def next_job(self, worker: _Worker) -> Job | None:
        """On ``worker``'s thread: the next job, or None (the thread ends) after ``linger_s``."""
        name_this_thread(SPARE_NAME)  # before it counts as waiting: ``waiting`` sees it named so
        with self._lock:
            if self._closed or len(self._idle) >= self.max_spare:
                return None
            self._idle.append(worker)
        if not worker.gate.acquire(timeout=self.linger_s):
            with self._lock:
                if worker in self._idle:
                    self._idle.remove(worker)
                    return None
            worker.gate.acquire()  # given a job just as the wait ended: its release is coming
        job, worker.job = worker.job, None
        return job

    def open(self) -> None:
        """An executor starts: finished jobs' threads wait for the next job again."""
        with self._lock:
            self._users += 1
            self._closed = False

    def let_go(self) -> None:
        """An executor stopped; unless another still runs (``open``), end every thread that
        waits now and let none wait later: a job ending after this ends its thread too."""
        with self._lock:
            self._users = max(0, self._users - 1)
            if self._users:
                return
            self._closed = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.job = None
            worker.gate.release()

    def waiting(self) -> int:
        """How many threads wait for work now."""
        with self._lock:
            return len(self._idle)


_local = threading.local()
"""The spare thread's worker, and whether ``following`` is in force on it."""

SPARES = SpareThreads()
"""The process's spare threads: the Tasks' strands and the sandbox runs' threads."""
