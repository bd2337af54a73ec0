"""``doctor``'s secret-store checks: every store a pool reads secrets from, tried as the pool would.

A store that cannot answer fails every task that references a secret, at run time and after
the recipe was picked up; these lines say so before. ``aws-secrets-manager`` is called with the
credentials the pool would use (the host's own AWS identity, through the same proxy settings),
asking for one id that need not exist: an answer of "not found" proves the path, the region and
the credentials. ``file`` needs its directory readable by the service user.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from executor.config import ExecutorConfig, PoolSettings
from executor.errors import ConfigError, ExecutorError, NotAllowedError, ThrottledError
from executor.observability.doctor import Check, DoctorOptions, failed, passed, warned

PROBE_NAME = "remote-executor-doctor-probe"
"""A secret name the probe asks for; it need not exist (a missing id is not an error)."""
AWS_CREDENTIALS_FIX = (
    "give the host an AWS identity the default chain finds (instance role, IRSA / pod identity, "
    "AWS_* variables or a profile) that may call secretsmanager:BatchGetSecretValue"
)


def store_checks(config: ExecutorConfig, pool: PoolSettings, options: DoctorOptions) -> Iterator[Check]:
    """One line per store of the pool that can fail on its own (env and datahub are covered elsewhere)."""
    if "file" in pool.secrets.stores:
        yield file_store_check(pool)
    if "aws-secrets-manager" in pool.secrets.stores:
        yield aws_store_check(config, pool, options)


def file_store_check(pool: PoolSettings) -> Check:
    """The file store's directory: absent is fine (no file secrets), unreadable is not."""
    name = f"pool {pool.id}: secrets file"
    directory = pool.secrets.file_dir
    if not directory.exists():
        return passed(name, f"{directory} does not exist: no file secrets (the other stores still apply)")
    if not directory.is_dir() or not os.access(directory, os.R_OK | os.X_OK):
        return failed(name, f"{directory} is not a directory readable by uid {os.geteuid()}",
                      f"make {directory} readable by the service user, or drop 'file' from secrets.stores")
    return passed(name, f"{directory} is readable")


def aws_store_check(config: ExecutorConfig, pool: PoolSettings, options: DoctorOptions) -> Check:
    """``BatchGetSecretValue`` for a probe id, with the host's identity as the pool's resolver has it."""
    import boto3
    from botocore.exceptions import BotoCoreError

    from executor.secrets.aws_sm import AwsSecretsManagerStore

    name = f"pool {pool.id}: secrets aws"
    aws = pool.secrets.aws
    try:
        session = boto3.Session(region_name=aws.region)
        region = session.region_name
        credentials = session.get_credentials()
    except BotoCoreError as exc:
        return failed(name, f"the AWS configuration cannot be read: {exc}", AWS_CREDENTIALS_FIX)
    if region is None:
        return failed(name, "no AWS region: secrets.aws.region is unset and the environment names none",
                      "set secrets.aws.region in the pool (or AWS_REGION)")
    if credentials is None:
        return failed(name, "no AWS credentials found for this host (tasks would fail with "
                      "NoCredentialsError when they resolve a secret)", AWS_CREDENTIALS_FIX)
    try:  # built as the pool's SecretResolver builds it: same region, prefix and proxies
        proxies = config.proxy.as_requests_proxies() or None
        store = AwsSecretsManagerStore(aws.region, aws.prefix, proxies=proxies)
        store.get([PROBE_NAME])
    except NotAllowedError as exc:
        return failed(name, f"credentials refused or not allowed: {exc}", AWS_CREDENTIALS_FIX)
    except ThrottledError as exc:
        return warned(name, f"throttled: {exc}", "none needed unless it persists")
    except (ExecutorError, ConfigError) as exc:
        return failed(name, str(exc), f"allow HTTPS from this host to secretsmanager.{region}.amazonaws.com "
                      "(or via the proxy), and check the region")
    method = getattr(credentials, "method", "unknown")
    return passed(name, f"answers in {region} with the host's credentials (from {method}); "
                  f"prefix {aws.prefix!r}")
