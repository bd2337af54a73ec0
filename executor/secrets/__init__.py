"""Secret stores (one module each) and the resolution of a recipe's ``${NAME}`` references.

Public API: ``SecretStore``, ``EnvStore``, ``FileStore``, ``DataHubStore``,
``AwsSecretsManagerStore``, ``secret_references``, ``resolve_secrets``, ``build_store``.
"""

from executor.secrets.aws_sm import AwsSecretsManagerStore
from executor.secrets.base import SECRET_REFERENCE, SecretStore, resolve_secrets, secret_references
from executor.secrets.datahub_store import DataHubStore
from executor.secrets.env import EnvStore
from executor.secrets.factory import STORE_KINDS, build_store
from executor.secrets.file import FileStore

__all__ = [
    "SECRET_REFERENCE",
    "STORE_KINDS",
    "AwsSecretsManagerStore",
    "DataHubStore",
    "EnvStore",
    "FileStore",
    "SecretStore",
    "build_store",
    "resolve_secrets",
    "secret_references",
]
