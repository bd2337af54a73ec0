"""The first RUNNING of a run, written by its Task on its own thread; the Reporter as the fallback.

The first RUNNING is what tells another executor that receives a duplicate message that the
request runs here, so it goes out at admission (``running_after_s`` 0). Handed to the
reporters' strand it cost that thread a wake-up and a turn per task, and on this kind of host a
wake-up costs more CPU than the call's own Python (``docs/performance.md``); the Task already
holds a GMS client on the pool's kept-alive connections, so it makes the one bounded call itself.

What the Reporter guaranteed still holds: RUNNING is never written after the request's
terminal result, because the Task produces that result itself, on the same thread, only after
this call has returned. A call GMS refused or did not answer hands the same ``Progress`` to the
Reporter, which sends it at once (it is the first it sees for the request), records what GMS
said for ``/readyz`` and drops it on a second failure like any progress (the Task's next
periodic report makes it good). Later reports keep going through the Reporter, which coalesces
them, so a slow GMS never holds up a Task more than this one call.
"""

from __future__ import annotations

from loguru import logger

from executor.datahub import aspects
from executor.datahub.gms import GmsClient
from executor.errors import ExecutorError
from executor.pool.messages import REPORTER, Progress
from executor.supervision import Directory


def write_first_running(gms: GmsClient, directory: Directory, progress: Progress) -> bool:
    """Write ``progress`` to GMS now; on a failure tell it to the Reporter instead. True when
    this call wrote it."""
    try:
        gms.ingest_proposal(aspects.EXECUTION_REQUEST_ENTITY, progress.urn, aspects.RESULT_ASPECT,
                            progress.aspect)
    except ExecutorError as exc:
        logger.debug("first RUNNING of {} left to the Reporter: {}", progress.urn, exc)
        directory.tell(REPORTER, progress)
        return False
    return True
