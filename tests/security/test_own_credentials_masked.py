"""Issue 10.4: the executor's own credentials are masked in every task, in every form.

Unit tests of the registry (``executor.pool.sensitive``) and of the masker's hex forms, then
for real: the hostile CLI prints the executor's GMS token, the AWS credentials the control
plane leased to the pool (recorded as the control plane handed them out, not read from the
executor) and the host's AWS keys, each raw, base64 and hex in both cases, and writes them
into its report. None of them may appear in the task log, the result or structured report
in GMS, any file under the state dir, or the executor's own log records.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from executor import hardening
from executor.config import ExecutorConfig, GmsSettings, PoolSettings
from executor.pool.context import PoolContext
from executor.pool.sensitive import EXPIRY_GRACE_S, HOST_CREDENTIAL_VARS, SensitiveValues
from executor.sandbox.live_masking import LiveMasker
from executor.sandbox.masking import MASK, Masker
from tests.faults.ledger import wait_until
from tests.security.hostile_world import HostileWorld, encodings, hostile_world, leaks  # noqa: F401


# -- the masker's hex forms -------------------------------------------------------------------
def test_hex_in_both_cases_is_masked_alone_and_inside_a_longer_dump() -> None:
    secret = "tok+en/with=signs"
    masker = Masker([secret])
    for form in ("raw", "base64", "hex", "HEX"):
        shown = encodings(secret)[form]
        assert masker.mask(f"x {shown} y") == f"x {MASK} y", form
    dump = ("prefix:" + secret + ":suffix").encode().hex()
    assert encodings(secret)["hex"] not in masker.mask(dump)
    assert encodings(secret)["HEX"] not in masker.mask(dump.upper())


# -- the registry -----------------------------------------------------------------------------
def test_pinned_values_stay_and_recent_ones_rotate() -> None:
    values = SensitiveValues(keep_recent=3)
    values.pin(["gms-token-value", None, "abc"])  # too short to mask: ignored
    for n in range(5):
        values.remember(f"lease-key-{n}")
    assert values.values() == ("gms-token-value", "lease-key-2", "lease-key-3", "lease-key-4")
    values.remember("lease-key-2")  # seen again: now the newest
    values.remember("lease-key-5")
    assert values.values() == ("gms-token-value", "lease-key-4", "lease-key-2", "lease-key-5")
    assert "lease" not in repr(values) and "token" not in repr(values)


def test_readers_and_a_writer_at_once() -> None:
    values = SensitiveValues(keep_recent=6)
    values.pin(["pinned-value"])
    errors: list[BaseException] = []

    def write() -> None:
        for n in range(2000):
            values.remember(f"key-{n}-a", f"key-{n}-b", f"key-{n}-c")

    def read() -> None:
        try:
            for _ in range(2000):
                seen = values.values()
                assert seen[0] == "pinned-value" and len(seen) <= 7
        except BaseException as exc:  # reported below, from the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=write), *(threading.Thread(target=read) for _ in range(2))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors and not any(t.is_alive() for t in threads)


def test_the_version_grows_exactly_when_the_values_change() -> None:
    values = SensitiveValues(keep_recent=3)
    start = values.version
    values.pin(["gms-token-value"])
    assert values.version == start + 1
    values.pin(["gms-token-value", "ab"])  # nothing new (and too short): same values
    values.remember("lease-key-1", "lease-key-2")
    after_lease = values.version
    assert after_lease > start + 1
    values.remember("lease-key-1")  # seen again: only its order changes
    assert values.version == after_lease
    values.remember("lease-key-3", "lease-key-4")  # lease-key-2 drops out: a change
    version, seen = values.snapshot()
    assert version > after_lease and "lease-key-2" not in seen and seen == values.values()


def test_a_running_masker_masks_values_registered_after_it_was_built() -> None:
    """A lease renewed while a task runs: the task's masker picks the new keys up by itself."""
    values = SensitiveValues()
    values.pin(["gms-token-made-up"])
    masker = LiveMasker(["recipe-secret-1"], values)
    assert masker.mask("recipe-secret-1 gms-token-made-up") == f"{MASK} {MASK}"
    renewed = "renewed/secret+key=" + "x" * 12
    assert masker.mask(renewed) == renewed  # not known yet: nothing to mask
    built_at = masker.version
    values.remember(renewed)
    assert masker.mask(f"a {renewed} b") == f"a {MASK} b"
    assert masker.mask(encodings(renewed)["HEX"]) == MASK and masker.version > built_at
    assert masker.mask("recipe-secret-1") == MASK  # the task's own secrets stay
    assert not masker.refresh()  # unchanged since: no rebuild



def test_runs_of_one_source_share_its_build_and_never_a_recipes_secret() -> None:
    """Each run starts with the pool's credentials: the second run takes the first one's
    automata (built once per version), a recipe's secrets added to one run reach no other, and
    a renewed lease makes the next run build again with the new key masked."""
    values = SensitiveValues()
    values.pin(["gms-token-made-up"])
    first = LiveMasker(values.values(), values)
    second = LiveMasker(values.values(), values)
    assert second._automata is first._automata
    first.add(["recipe-secret-of-the-first"])
    assert first.mask("recipe-secret-of-the-first gms-token-made-up") == f"{MASK} {MASK}"
    assert second.mask("recipe-secret-of-the-first") == "recipe-secret-of-the-first"
    third = LiveMasker(values.values(), values)
    assert third.mask("recipe-secret-of-the-first gms-token-made-up") == f"recipe-secret-of-the-first {MASK}"
    own = LiveMasker(["a-value-of-its-own", *values.values()], values)  # not the source's alone
    assert own._automata is not first._automata and own.mask("a-value-of-its-own") == MASK
    assert LiveMasker(values.values(), values).mask("a-value-of-its-own") == "a-value-of-its-own"
    renewed = "renewed/secret+key=" + "y" * 12
    values.remember(renewed)
    fourth = LiveMasker(values.values(), values)
    assert fourth._automata is not first._automata
    assert fourth.mask(f"{renewed} gms-token-made-up") == f"{MASK} {MASK}"


def test_a_new_run_masks_the_leases_valid_at_its_start_and_keeps_them_while_it_runs() -> None:
    """A long-lived pool keeps the last eight leases' values: a run starting now scans only for
    those still valid (give or take the clocks' grace), and one that expires while the run goes
    on stays masked in that run, through a rebuild for a renewal."""
    values = SensitiveValues()
    values.pin(["gms-token-made-up"])
    now = time.time()
    values.remember("expired-lease-key", "expired-lease-secret", expires=now - EXPIRY_GRACE_S - 60)
    values.remember("lease-expired-a-minute-ago", expires=now - 60)  # within the clocks' grace
    values.remember("current-lease-key", expires=now + 3600)
    values.remember("lease-of-unknown-expiry")
    assert values.values() == ("gms-token-made-up", "lease-expired-a-minute-ago", "current-lease-key",
                               "lease-of-unknown-expiry")
    assert "expired-lease-key" in values.snapshot()[1]  # no start given: every value kept
    masker = LiveMasker([], values)  # a run starting now, of the source's values alone
    text = "expired-lease-key current-lease-key lease-of-unknown-expiry gms-token-made-up"
    assert masker.mask(text) == f"expired-lease-key {MASK} {MASK} {MASK}"
    # it expires while the run goes on (seen from a run starting after its expiry and grace)
    values.remember("renewed-lease-key", expires=now + 7200)  # a renewal: the run rebuilds
    assert masker.mask("current-lease-key renewed-lease-key") == f"{MASK} {MASK}"
    assert masker.mask("expired-lease-key") == "expired-lease-key"
    later = values.snapshot(now + 3600 + EXPIRY_GRACE_S + 1)[1]  # a run starting after it expired
    assert "current-lease-key" not in later and "renewed-lease-key" in later


def test_the_grace_covers_the_skew_aws_accepts() -> None:
    """AWS accepts a SigV4 signature from a clock up to 15 minutes off and boto3 does not correct
    it: a host 14 minutes fast still uses a lease it sees as expired, and new runs mask it."""
    values = SensitiveValues()
    now = time.time()
    values.remember("lease-seen-expired-by-a-fast-host", expires=now - 14 * 60)
    assert values.values() == ("lease-seen-expired-by-a-fast-host",)
    assert EXPIRY_GRACE_S >= 15 * 60 + 60


def test_a_value_sent_again_with_an_earlier_expiry_keeps_its_latest() -> None:
    """A renewal re-sending a value with an earlier expiry (another clock, a stale copy) must
    not unmask it while its later expiry holds; unknown (None) outlasts any expiry."""
    values = SensitiveValues()
    now = time.time()
    values.remember("lease-key-sent-twice", "lease-of-unknown-expiry")
    values.remember("lease-key-sent-twice", expires=now + 3600)
    values.remember("lease-key-sent-twice", "lease-of-unknown-expiry", expires=now - EXPIRY_GRACE_S - 60)
    assert values.values() == ("lease-key-sent-twice", "lease-of-unknown-expiry")
    values.remember("lease-with-expiry", expires=now + 3600)
    values.remember("lease-with-expiry", expires=now - EXPIRY_GRACE_S - 60)
    assert "lease-with-expiry" in values.values()
    values.remember("next-lease-key", expires=now + 7200)
    assert "lease-with-expiry" not in values.snapshot(now + 3600 + EXPIRY_GRACE_S + 1)[1]


def test_the_lease_in_force_is_masked_whatever_expiry_gms_gave_it() -> None:
    """The expiry is GMS's answer: a lease handed with one already past (a wrong clock, a
    hostile answer) is the one the executor uses, so new runs mask it; the lease before it,
    past its expiry and grace, is dropped once a newer one is in force."""
    values = SensitiveValues()
    now = time.time()
    values.remember("older-lease-key", expires=now - EXPIRY_GRACE_S - 120)
    values.remember("lease-key-given-expired", expires=now - EXPIRY_GRACE_S - 60)
    assert values.values() == ("lease-key-given-expired",)


def test_secrets_added_to_a_built_masker_are_masked_in_every_form_beside_the_credentials() -> None:
    """A held run's secrets come after its masker was built: they get automata of their own,
    and a text with both kinds, in any form, or one value inside the other, leaks neither."""
    values = SensitiveValues()
    token = "gms+token/made=up-" + "t" * 40
    values.pin([token])
    masker = LiveMasker(values.values(), values)
    recipe_secret = "recipe-pass-" + "p" * 12
    inside = token[5:20]  # a recipe secret that is part of the token
    masker.add([recipe_secret, inside, "abc"])
    for form in ("raw", "base64", "hex", "HEX"):
        text = f"{encodings(token)[form]} and {encodings(recipe_secret)[form]} and {encodings(inside)[form]}"
        assert not leaks(masker.mask(text), [token, recipe_secret, inside]), form
    assert masker.mask(token) == MASK  # the longer match wins over the part inside it
    assert masker.short_secrets_note is not None and "1 secret value" in masker.short_secrets_note
    assert masker.max_form_length >= len(encodings(token)["hex"])


def test_a_masker_without_a_source_is_a_plain_masker() -> None:
    masker = LiveMasker(["tok+en/with=signs", "ab"])
    assert masker.mask("x tok+en/with=signs") == f"x {MASK}" and not masker.refresh()
    assert masker.short_secrets_note is not None and "1 secret value" in masker.short_secrets_note
    assert not LiveMasker([]) and LiveMasker([], SensitiveValues()).mask("text") == "text"


def test_a_pool_context_pins_the_token_and_the_hosts_keys(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardening, "PROCESS", hardening.ProcessCredentials())  # no other test's keys
    host = {name: f"host-{name.lower()}-made-up" for name in HOST_CREDENTIAL_VARS}
    for name, value in host.items():
        monkeypatch.setenv(name, value)
    config = ExecutorConfig(gms=GmsSettings(url="http://127.0.0.1:1"), state_dir=tmp_path,
                            pools=(PoolSettings(id="default"),))
    pool = PoolContext(config=config, pool=config.pools[0], token="gms-token-made-up", instance_id="t")
    assert set(pool.credentials.values()) == {"gms-token-made-up", *host.values()}


def test_keys_taken_out_of_the_environment_at_start_up_stay_masked(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardening, "PROCESS", hardening.ProcessCredentials())  # no other test's keys
    for name in hardening.CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "host-secret-taken-at-start-up-made-up")
    assert hardening.take_credentials() == {"AWS_SECRET_ACCESS_KEY": "host-secret-taken-at-start-up-made-up"}
    assert "AWS_SECRET_ACCESS_KEY" not in os.environ  # as ``run`` leaves it: no child inherits it
    config = ExecutorConfig(gms=GmsSettings(url="http://127.0.0.1:1"), state_dir=tmp_path,
                            pools=(PoolSettings(id="default"),))
    pool = PoolContext(config=config, pool=config.pools[0], token="gms-token-made-up", instance_id="t")
    assert set(pool.credentials.values()) == {"gms-token-made-up", "host-secret-taken-at-start-up-made-up"}


# -- for real ---------------------------------------------------------------------------------
def test_the_executors_credentials_printed_in_every_encoding_are_masked(
        hostile_world: HostileWorld) -> None:  # noqa: F811
    world = hostile_world
    wait_until(world.leased_values, 60, "the executor's first lease")
    stolen = world.own_credentials()
    secret_file = world.tmp / "stolen.txt"
    secret_file.write_text("\n".join(stolen) + "\n")
    result = world.run("print_credentials", secret_file=str(secret_file))
    assert result["status"] == "SUCCESS", result["report"]
    report = str(result["report"])
    for form in ("raw", "base64", "hex", "HEX"):  # the CLI did print them: they arrive masked
        assert report.count(f"hostile: {form} {MASK}") == len(stolen), form
    structured = result["structuredReport"]
    assert isinstance(structured, dict) and MASK in structured["serializedValue"]
    task_log = world.harness.task_log(world.urns[-1])
    assert f"hostile: HEX {MASK}" in task_log.read_text()
    assert leaks(world.everything_written(), stolen) == []
