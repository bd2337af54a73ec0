"""Generic supervision for pykka actors (OTP-style), with no DataHub knowledge.

Public API: ``SupervisedActor`` (base class of every supervised actor), ``Supervisor``,
``start_root``, ``supervisor_spec``, the spec values (``ChildSpec``, ``Restart``,
``Strategy``, ``SupervisorPolicy``, ``ChildContext``), ``Directory`` and ``Timers``.
"""

from executor.supervision.actor import SupervisedActor
from executor.supervision.directory import Directory
from executor.supervision.spec import (
    ChildContext,
    ChildExited,
    ChildSpec,
    Restart,
    Strategy,
    SupervisorPolicy,
)
from executor.supervision.supervisor import (
    ChildStatus,
    EscalationError,
    GetChildren,
    Supervisor,
    start_root,
    supervisor_spec,
)
from executor.supervision.timers import Timers

__all__ = [
    "ChildContext",
    "ChildExited",
    "ChildSpec",
    "ChildStatus",
    "Directory",
    "EscalationError",
    "GetChildren",
    "Restart",
    "Strategy",
    "SupervisedActor",
    "Supervisor",
    "SupervisorPolicy",
    "Timers",
    "start_root",
    "supervisor_spec",
]
