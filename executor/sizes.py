"""The one reader of memory sizes written by people: ``EXECUTOR_TASK_MEMORY_LIMIT`` and friends.

DataHub's own executor reads ``EXECUTOR_TASK_MEMORY_LIMIT`` as ``int(value)``: a plain count
of bytes. That meaning is kept exactly; on top of it, the suffixes Kubernetes writes are
accepted with Kubernetes' meaning, so ``512M`` and ``512Mi`` differ as they do in a pod spec:

    1073741824            bytes (DataHub's form)
    500k 512M 2G 1T 1P    powers of 1000
    64Ki 512Mi 2Gi 1Ti    powers of 1024
    an optional trailing ``B`` (``512MB``, ``2GiB``) changes nothing

A fraction is allowed with a suffix (``1.5Gi``). Anything else (garbage, a sign, zero, a value
above ``MAX_BYTES``, 400 nines) is a ``BadInputError`` naming the setting, never an
``OverflowError``: the arithmetic is exact (``Decimal``) and bounded before it is done.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from executor.errors import BadInputError

MAX_BYTES = 2**60
"""1 EiB: more than any host has; bigger values are mistakes, not limits."""
_MAX_CHARS = 1024
_SIZE = re.compile(r"^(\d+(?:\.\d{1,9})?)\s*(?:([kKmMgGtTpPeE])(i?))?[bB]?$")
_POWERS = {"k": 1, "m": 2, "g": 3, "t": 4, "p": 5, "e": 6}


def parse_size(text: object, what: str = "size") -> int:
    """Bytes from a size as described above; ``BadInputError`` naming ``what`` otherwise."""
    example = "a byte count like 1073741824, or 512M, 2Gi"
    if not isinstance(text, str) or len(text) > _MAX_CHARS:
        raise BadInputError(f"{what} is not {example}")
    match = _SIZE.match(text.strip())
    if match is None:
        raise BadInputError(f"{what} {text.strip()[:40]!r} is not {example}")
    number, unit, binary = match.groups()
    if unit is None and "." in number:
        raise BadInputError(f"{what}: a byte count must be a whole number ({example})")
    try:
        factor = (1024 if binary else 1000) ** _POWERS[unit.lower()] if unit else 1
        size = Decimal(number) * factor
    except InvalidOperation:
        raise BadInputError(f"{what} is not {example}") from None
    if size > MAX_BYTES:
        raise BadInputError(f"{what} is larger than {MAX_BYTES} bytes (1 EiB)")
    value = int(size)
    if value <= 0:
        raise BadInputError(f"{what} must be positive")
    return value
