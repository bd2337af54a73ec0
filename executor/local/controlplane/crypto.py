"""Sealing secret values at rest: AES-256-GCM with a key derived from an operator's key.

With a key (``--secret-key-file`` or ``REMOTE_EXECUTOR_CONTROLPLANE_KEY``), values are stored
as ``nonce || ciphertext`` with the secret's name as associated data, so a sealed value cannot
be moved to another name. The AES key comes from scrypt over the operator's key and a random
salt kept in the state; a check value tells a wrong key apart from a corrupt row at start.
Without a key, values are stored in plain text (scheme ``plain``) and the docs say so.
``cryptography`` is a dependency of moto, so it is present wherever the control plane runs.
"""

from __future__ import annotations

import hashlib
import os

from executor.errors import ConfigError

PLAIN = "plain"
AESGCM_SCHEME = "aes256gcm-scrypt"
_CHECK_NAME = "__key_check__"
_CHECK_VALUE = b"remote-executor control plane"


class SecretBox:
    """Seals and opens secret values; ``key`` None means plain text."""

    def __init__(self, key: bytes | None, salt: bytes) -> None:
        self._aead = None
        if key is not None:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            derived = hashlib.scrypt(key, salt=salt, n=2**14, r=8, p=1, dklen=32)
            self._aead = AESGCM(derived)

    @property
    def scheme(self) -> str:
        """The scheme new values are sealed with."""
        return PLAIN if self._aead is None else AESGCM_SCHEME

    def seal(self, name: str, value: str) -> bytes:
        """The stored form of ``value`` under ``name``."""
        data = value.encode("utf-8")
        if self._aead is None:
            return data
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, data, name.encode("utf-8"))

    def open(self, name: str, scheme: str, sealed: bytes) -> str:
        """The plain value; raises ConfigError if it cannot be opened with this key."""
        if scheme == PLAIN:
            return sealed.decode("utf-8")
        if self._aead is None:
            raise ConfigError("secret key", ["the state holds encrypted secrets: configure the key"])
        from cryptography.exceptions import InvalidTag

        try:
            return self._aead.decrypt(sealed[:12], sealed[12:], name.encode("utf-8")).decode("utf-8")
        except InvalidTag:
            raise ConfigError("secret key", [f"cannot decrypt secret {name!r}: wrong key?"]) from None

    def check_value(self) -> bytes:
        """A sealed constant stored with the state, to detect a wrong key at start."""
        return self.seal(_CHECK_NAME, _CHECK_VALUE.decode())

    def verify(self, sealed_check: bytes) -> None:
        """Raise ConfigError unless ``sealed_check`` opens to the constant with this key."""
        if self.open(_CHECK_NAME, AESGCM_SCHEME, sealed_check).encode() != _CHECK_VALUE:
            raise ConfigError("secret key", ["the key does not match the state"])


def load_key(key_file: str | None, env: dict[str, str] | None = None) -> bytes | None:
    """The operator's key from a file, else from ``REMOTE_EXECUTOR_CONTROLPLANE_KEY``, else None."""
    if key_file:
        try:
            with open(key_file, "rb") as handle:
                key = handle.read().strip()
        except OSError as exc:
            raise ConfigError(key_file, [f"cannot read the secret key file: {exc.strerror}"]) from None
        if not key:
            raise ConfigError(key_file, ["the secret key file is empty"])
        return key
    value = (env if env is not None else os.environ).get("REMOTE_EXECUTOR_CONTROLPLANE_KEY", "")
    return value.encode("utf-8") if value else None
