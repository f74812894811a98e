from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid

import pytest
import redis

from tests.conftest import ROOT, child_env, wait_for
from tradingsite.locks import holder_dead, single_flight, skipped_count
from tradingsite.redisconn import redis_client, redis_key


@pytest.fixture
def name() -> str:
    return f"test-{uuid.uuid4().hex}"


def hold_in_other_process(name: str, *, ttl: float, then: str) -> subprocess.Popen[str]:
    """Another process takes the lock, prints "held", then sleeps or dies without releasing."""
    code = (
        "import os, sys, time, django\n"
        "django.setup()\n"
        "from tradingsite.locks import single_flight\n"
        f"with single_flight({name!r}, ttl_seconds={ttl}) as run:\n"
        "    print('held' if run.acquired else 'skipped', flush=True)\n"
        f"    {'os._exit(0)' if then == 'crash' else 'time.sleep(30)'}\n"
    )
    env = child_env(DJANGO_SETTINGS_MODULE="tradingsite.settings")
    process = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_second_run_is_skipped_and_counted_while_the_first_holds_the_lock(name: str) -> None:
    with single_flight(name, ttl_seconds=30) as first:
        assert first.acquired
        with single_flight(name, ttl_seconds=30) as second:
            assert not second.acquired
        with single_flight(name, ttl_seconds=30) as third:
            assert not third.acquired
    assert skipped_count(name) == 2


def test_the_lock_is_free_again_after_the_holder_finishes(name: str) -> None:
    with single_flight(name, ttl_seconds=30) as first:
        assert first.acquired
    with single_flight(name, ttl_seconds=30) as again:
        assert again.acquired
    assert skipped_count(name) == 0


def test_the_lock_is_released_when_the_run_raises(name: str) -> None:
    with pytest.raises(ZeroDivisionError), single_flight(name, ttl_seconds=30):
        _ = 1 / 0
    with single_flight(name, ttl_seconds=30) as again:
        assert again.acquired


def test_a_run_in_another_process_blocks_this_one(name: str) -> None:
    holder = hold_in_other_process(name, ttl=30, then="sleep")
    try:
        with single_flight(name, ttl_seconds=30) as run:
            assert not run.acquired
        assert skipped_count(name) == 1
    finally:
        holder.kill()
        holder.wait()


def test_a_crashed_holder_loses_the_lock_when_it_expires(name: str) -> None:
    holder = hold_in_other_process(name, ttl=1.0, then="crash")
    holder.wait()

    def acquired() -> bool:
        with single_flight(name, ttl_seconds=30) as run:
            return run.acquired

    wait_for(acquired, timeout=30, interval=0.2, what="the crashed holder's lock to expire")


def test_renewing_keeps_the_lock_past_its_ttl(name: str) -> None:
    with single_flight(name, ttl_seconds=2) as run:
        assert run.acquired
        time.sleep(1.4)
        run.renew()
        time.sleep(1.4)  # 2.8 s after acquiring: only the renewal keeps the lock
        with single_flight(name, ttl_seconds=2) as other:
            assert not other.acquired


def test_renewing_a_lock_that_expired_raises(name: str) -> None:
    with single_flight(name, ttl_seconds=0.5) as run:
        time.sleep(1.0)
        with pytest.raises(redis.exceptions.LockNotOwnedError):
            run.renew()


def test_a_crashed_holder_on_this_machine_loses_the_lock_at_once(name: str) -> None:
    # given a process of this machine that took the lock for long and died holding it
    holder = hold_in_other_process(name, ttl=300, then="crash")
    holder.wait()

    # when the next run comes
    with single_flight(name, ttl_seconds=30) as run:
        # then it takes the lock over without waiting out the expiry
        assert run.acquired
    assert skipped_count(name) == 0


def test_a_holder_elsewhere_keeps_the_lock_until_it_expires(name: str) -> None:
    # given the lock held by a process id that does not run here, but on another host
    dead_pid = 2**22 + 1  # above the kernel's pid_max: never a running process
    client = redis_client()
    key = redis_key("lock", name)
    client.set(key, f"another-host|pid:[1]|{dead_pid}|{uuid.uuid4().hex}", px=30_000)

    # then a run here cannot tell it is dead, and is skipped
    with single_flight(name, ttl_seconds=30) as run:
        assert not run.acquired
    assert holder_dead(client.get(key)) is False


def test_only_a_dead_process_of_this_machine_and_namespace_is_judged_dead() -> None:
    host, namespace = socket.gethostname(), os.readlink("/proc/self/ns/pid")
    dead_pid = 2**22 + 1  # above the kernel's pid_max: never a running process
    token = uuid.uuid4().hex
    assert holder_dead(f"{host}|{namespace}|{dead_pid}|{token}")
    assert not holder_dead(f"{host}|{namespace}|{os.getpid()}|{token}")  # this process
    assert not holder_dead(f"{host}|{namespace}|1|{token}")  # alive (init)
    assert not holder_dead(f"{host}|pid:[0]|{dead_pid}|{token}")  # another namespace
    assert not holder_dead(f"{host}||{dead_pid}|{token}")  # namespace unknown
    assert not holder_dead(token)  # an old-style token
    assert not holder_dead(None)
