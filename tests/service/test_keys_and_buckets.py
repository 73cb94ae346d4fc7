"""Unit tests: key digests and the `vigil keys` commands; the token buckets' arithmetic and bound."""

from __future__ import annotations

import io

import pytest

from service.auth import Keyring, key_digest, match_key, stored_digest
from service.cli import main as vigil
from service.ratelimit import TokenBuckets
from service.settings import Settings


def test_digest_is_peppered_and_entries_may_be_digests() -> None:
    assert key_digest("k", "p1") != key_digest("k", "p2")
    s = Settings(api_keys=["raw-key", "hmac-sha256:" + key_digest("stored", "pep")], api_key_pepper="pep")
    ring = Keyring.from_settings(s)
    assert ring.match_client("raw-key") == key_digest("raw-key", "pep")
    assert ring.match_client("stored") == key_digest("stored", "pep")
    assert ring.match_client("other") is None and ring.match_client(None) is None
    assert match_key("raw-key", ring.client, "wrong-pepper") is None
    with pytest.raises(ValueError):
        stored_digest("hmac-sha256:XYZ", "pep")


def test_keys_digest_command(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("VIGIL_API_KEY_PEPPER", "cli-pepper")
    monkeypatch.setattr("sys.stdin", io.StringIO("my-key\n"))
    assert vigil(["keys", "digest"]) == 0
    assert capsys.readouterr().out.startswith("hmac-sha256:" + key_digest("my-key", "cli-pepper"))
    assert vigil(["keys", "new"]) == 0
    out = capsys.readouterr().out
    key = out.split("key:")[1].split()[0]
    assert f"hmac-sha256:{key_digest(key, 'cli-pepper')}" in out
    assert capsys.readouterr().err == ""  # the service's pepper: no warning
    monkeypatch.setattr("sys.stdin", io.StringIO(f"key:    {key}\n"))  # the whole line pasted
    assert vigil(["keys", "digest"]) == 2 and "give the key alone" in capsys.readouterr().err
    monkeypatch.delenv("VIGIL_API_KEY_PEPPER")  # the development pepper: said, on stderr
    assert vigil(["keys", "new"]) == 0
    captured = capsys.readouterr()
    assert "uses the development pepper" in captured.err and "warning" not in captured.out


def test_token_bucket_refills_and_says_how_long_to_wait() -> None:
    now = [0.0]
    b = TokenBuckets(rate=2.0, burst=3, max_clients=10, clock=lambda: now[0])
    assert [b.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take("a") == pytest.approx(0.5)  # one token at 2/s
    assert b.take("b") == 0.0  # per client
    now[0] += 0.5
    assert b.take("a") == 0.0
    now[0] += 100
    assert [b.take("a") for _ in range(3)] == [0.0, 0.0, 0.0] and b.take("a") > 0  # refills to the burst, no more


def test_a_batch_costs_a_token_per_image_and_may_leave_a_debt() -> None:
    now = [0.0]
    b = TokenBuckets(rate=2.0, burst=3, max_clients=10, clock=lambda: now[0])
    assert b.take("a", 10) == 0.0  # a full bucket grants a batch larger than the burst...
    assert b.take("a") == pytest.approx((1 - (3 - 10)) / 2)  # ...and its debt is paid back first: 4 s
    assert b.take("b") == 0.0 and b.take("b", 3, prepaid=1) == 0.0  # 2 left + the one already taken
    assert b.take("b") == pytest.approx(0.5)
    # Batches of 3 as the service takes them: one token before the body is read, the rest after.
    for client in ("c", "d"):
        assert b.take(client, 2) == 0.0 and b.take(client) == 0.0  # 0 left
        assert b.take(client, 3, prepaid=1) == pytest.approx(1.5)  # refused; that first token stays spent
    now[0] += 0.75  # "d" retries halfway: refused, and a token spent...
    assert b.take("d") == 0.0 and b.take("d", 3, prepaid=1) > 0
    now[0] += 0.75
    assert b.take("c") == 0.0 and b.take("c", 3, prepaid=1) == 0.0  # a retry after exactly its wait is granted
    assert b.take("d") == 0.0 and b.take("d", 3, prepaid=1) > 0  # ...so "d" still waits


def test_eviction_does_not_forget_a_debt() -> None:
    """Room for two clients: a third evicts the oldest that owes nothing, not the one in debt,
    which would otherwise come back with a full burst."""
    now = [0.0]
    b = TokenBuckets(rate=1.0, burst=2, max_clients=2, clock=lambda: now[0])
    assert b.take("debtor", 10) == 0.0  # 8 tokens in debt: 9 s until its next image
    assert b.take("b") == 0.0 and b.take("c") == 0.0  # "c" makes three: "b" goes, not "debtor"
    assert len(b) == 2 and b.take("debtor") == pytest.approx(9.0)
    now[0] += 9.0
    assert b.take("debtor") == 0.0  # paid back: served again


def test_token_buckets_are_bounded() -> None:
    b = TokenBuckets(rate=1.0, burst=1, max_clients=100)
    for i in range(10_000):
        b.take(f"client-{i}")
    assert len(b) == 100


def test_a_reader_that_closes_the_pipe_is_no_bug() -> None:
    """`vigil keys new | head -1`: the reader went away. It ended in a traceback and "internal
    error (a bug...)" with status 70; now quietly, with a shell's status for SIGPIPE."""
    import os
    import subprocess
    import sys

    from service.cli import SIGPIPE_STATUS
    from tests.conftest import REPO

    env = {**os.environ, "VIGIL_API_KEY_PEPPER": "pipe-test-pepper"}  # (the development one adds a warning)
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "keys", "new"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before it writes a byte
    err = proc.stderr.read().decode()
    assert (proc.wait(timeout=60), err) == (SIGPIPE_STATUS, "")
