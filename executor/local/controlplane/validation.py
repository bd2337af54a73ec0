"""Checks an aspect against DataHub's own model before it is stored.

Known aspects are checked with acryl-datahub's generated classes
(``Cls.from_obj(post_json_transform(value))`` then ``.validate()``), the same models GMS
enforces; unknown top-level fields are refused too, as GMS does. ``dataHubRemoteExecutorStatus``
is a Cloud-only model that package lacks, so it is checked against PROTOCOL.md's field list.
Aspects that package does not know at all are stored as they come.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from executor.errors import BadInputError

PRESENCE_ASPECT = "dataHubRemoteExecutorStatus"
_PRESENCE_FIELDS: dict[str, tuple[type, ...]] = {
    "executorPoolId": (str,),
    "executorReleaseVersion": (str,),
    "executorAddress": (str,),
    "executorHostname": (str,),
    "executorUptime": (int, float),
    "executorExpired": (bool,),
    "executorStopped": (bool,),
    "executorEmbedded": (bool,),
    "executorInternal": (bool,),
    "logDeliveryEnabled": (bool,),
    "reportedAt": (int, float),
    "channel": (str,),
}
_PRESENCE_REQUIRED = ("executorPoolId", "reportedAt")
_CHANNELS = ("SQS", "KAFKA")


@cache
def _aspect_classes() -> dict[str, Any]:
    from datahub.metadata.schema_classes import ASPECT_NAME_MAP

    return dict(ASPECT_NAME_MAP)


def aspect_class(aspect_name: str) -> Any | None:
    """acryl-datahub's class for ``aspect_name``, or None if it has none."""
    return _aspect_classes().get(aspect_name)


def record_fullname(aspect_name: str) -> str:
    """The Pegasus name GMS uses as the key in ``GET /aspects`` answers."""
    cls = aspect_class(aspect_name)
    if cls is None:
        return aspect_name
    return str(cls.RECORD_SCHEMA.fullname).replace(".pegasus2avro", "")


def validate_aspect(aspect_name: str, value: object) -> None:
    """Raise BadInputError (message says what is wrong) unless ``value`` fits the model."""
    if not isinstance(value, dict):
        raise BadInputError(f"aspect {aspect_name} must be a JSON object")
    if aspect_name == PRESENCE_ASPECT:
        _validate_presence(value)
        return
    cls = aspect_class(aspect_name)
    if cls is None:
        return
    from datahub.emitter.serialization_helper import post_json_transform

    known = {f.name for f in cls.RECORD_SCHEMA.fields}
    unknown = sorted(set(value) - known)
    if unknown:
        raise BadInputError(f"aspect {aspect_name}: unrecognized field(s) {', '.join(unknown)}")
    try:
        obj = cls.from_obj(post_json_transform(value))
        valid = bool(obj.validate())
    except Exception as exc:  # the avro layer raises several unrelated types
        raise BadInputError(f"aspect {aspect_name} does not fit {cls.__name__}: {exc}") from None
    if not valid:
        raise BadInputError(f"aspect {aspect_name} does not fit {cls.__name__}: wrong field type")


def _validate_presence(value: dict[str, Any]) -> None:
    problems = [f"unrecognized field {k}" for k in sorted(value) if k not in _PRESENCE_FIELDS]
    problems += [f"missing field {k}" for k in _PRESENCE_REQUIRED if k not in value]
    for key, types in _PRESENCE_FIELDS.items():
        if key in value and value[key] is not None:
            ok = isinstance(value[key], types) and not (bool not in types and isinstance(value[key], bool))
            if not ok:
                problems.append(f"{key} must be {' or '.join(t.__name__ for t in types)}")
    if isinstance(value.get("channel"), str) and value["channel"] not in _CHANNELS:
        problems.append("channel must be SQS or KAFKA")
    if problems:
        raise BadInputError(f"aspect {PRESENCE_ASPECT}: " + "; ".join(problems))
