"""Generic supervision for pykka actors (OTP-style), with no DataHub knowledge.

Public API: ``SupervisedActor`` (base class of every supervised actor), ``Supervisor``
(one_for_one, permanent children), ``start_root``, ``supervisor_spec``, the spec values
(``ChildSpec``, ``SupervisorPolicy``, ``ChildContext``, ``ChildExited``), ``Directory`` and
``Timers`` (an actor's delayed messages on the process's one timer thread).
"""

from executor.supervision.actor import SupervisedActor
from executor.supervision.directory import Directory
from executor.supervision.spec import ChildContext, ChildExited, ChildSpec, SupervisorPolicy
from executor.supervision.supervisor import EscalationError, Supervisor, start_root, supervisor_spec
from executor.supervision.timers import Timers

__all__ = [
    "ChildContext",
    "ChildExited",
    "ChildSpec",
    "Directory",
    "EscalationError",
    "SupervisedActor",
    "Supervisor",
    "SupervisorPolicy",
    "Timers",
    "start_root",
    "supervisor_spec",
]
