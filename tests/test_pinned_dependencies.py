"""The dependencies whose internals the worker leans on are bounded in pyproject.toml to the minor versions
the suite ran with, and what the workarounds use of them is still there.

A new minor release of Faust may rename a private method we patch or an attribute we read: with the bound, a
fresh install keeps the tested release; without it, only a failing worker would say so. An upgrade is a
deliberate step (docs: "Upgrading a pinned dependency"): raise the bound, reinstall, run
this file and the tests of the workarounds, then record the new minor here.
"""

from __future__ import annotations

import asyncio
import inspect
import tomllib
from collections.abc import MutableMapping
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import aiokafka.consumer.fetcher
import faust
import pytest
import rocksdict
from faust.transport.consumer import ThreadDelegateConsumer
from faust.web.base import BlueprintManager
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Pin:
    distribution: str
    tested: str  # the minor release the suite runs with, e.g. "0.15"
    why: str  # what of it we lean on, and where

    @property
    def next_minor(self) -> Version:
        major, minor = (int(part) for part in self.tested.split("."))
        return Version(f"{major}.{minor + 1}")


PINS = (
    Pin(
        "faust-streaming",
        "0.15",
        "private: ThreadDelegateConsumer._getmany patched (streams/handover.py); rocksdb Store._dbs, "
        "_db_for_partition, _key_index, _decode_value and memory Store._key_partition read "
        "(streams/storage.py, streams/state/listing.py, streams/state/scan.py); Web.blueprints replaced "
        "(streams/web_access.py); TableManager.recovery.completed (streams/context.py); the context variable "
        "faust.streams._current_event, set per record handled, and Consumer._new_offset, bounded by the "
        "records the lanes hold (streams/lanes.py)",
    ),
    Pin(
        "aiokafka",
        "0.14",
        "streams/handover.py works around Fetcher.fetched_records taking an empty set of partitions "
        "for every partition",
    ),
    Pin(
        "mode-streaming",
        "0.7",
        "streams/handover.py holds deliveries with Faust's FlowControlEvent until Faust resumes it",
    ),
    Pin(
        "rocksdict",
        "0.3",
        "the databases Faust's rocksdb store opens, read and written directly in raw mode "
        "(streams/storage.py, streams/state/listing.py, streams/state/scan.py)",
    ),
)


def _server_requirements() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(text) for text in project["optional-dependencies"]["server"]]
    return {requirement.name: requirement for requirement in requirements}


@pytest.mark.parametrize("pin", PINS, ids=lambda pin: pin.distribution)
def test_pyproject_bounds_the_dependency_below_its_next_untested_minor(pin: Pin) -> None:
    requirement = _server_requirements().get(pin.distribution)
    assert requirement is not None, f"the server extra must name {pin.distribution} ({pin.why})"
    specifier = requirement.specifier
    assert pin.next_minor not in specifier, f"{requirement}: {pin.next_minor} is untested ({pin.why})"
    assert Version(f"{pin.tested}.999") in specifier, f"{requirement} excludes the tested {pin.tested}"


@pytest.mark.parametrize("pin", PINS, ids=lambda pin: pin.distribution)
def test_the_installed_release_is_the_tested_minor(pin: Pin) -> None:
    installed = Version(version(pin.distribution))
    assert f"{installed.major}.{installed.minor}" == pin.tested, (
        f"{pin.distribution} {installed} is installed, the suite was checked with {pin.tested}: "
        "run the workarounds' tests, then update PINS (docs: Upgrading a pinned dependency)"
    )
    assert installed in _server_requirements()[pin.distribution].specifier


def test_faust_still_has_the_consumer_method_the_handover_patches() -> None:
    """faust-streaming 0.15: ``ThreadDelegateConsumer._getmany(self, active_partitions, timeout)``."""
    method = ThreadDelegateConsumer._getmany
    assert inspect.iscoroutinefunction(method)
    assert list(inspect.signature(method).parameters) == ["self", "active_partitions", "timeout"]


def test_faust_tables_still_take_the_partition_of_the_event_the_lanes_set() -> None:
    """faust-streaming 0.15: ``faust.streams.current_event()`` reads the context variable
    ``_current_event`` (a weak reference), which the lanes set to the record each task handles, so that
    its table writes go to that record's partition."""
    import contextvars
    import weakref

    from faust.streams import _current_event, current_event

    assert isinstance(_current_event, contextvars.ContextVar)

    class Event:
        pass

    event: Any = Event()
    token = _current_event.set(weakref.ref(event))
    try:
        assert current_event() is event
    finally:
        _current_event.reset(token)
    assert current_event() is None


def test_faust_still_computes_the_offset_to_commit_per_partition() -> None:
    """faust-streaming 0.15: ``Consumer._new_offset(self, tp)`` returns the offset to commit (or None) and
    ``_should_commit(tp, offset)`` keeps only offsets past the committed one: the lanes bound the first."""
    from faust.transport.consumer import Consumer

    new_offset = getattr(Consumer._new_offset, "__wrapped__", Consumer._new_offset)
    assert list(inspect.signature(new_offset).parameters) == ["self", "tp"]
    assert list(inspect.signature(Consumer._should_commit).parameters) == ["self", "tp", "offset"]


def test_aiokafka_still_fetches_by_a_set_of_partitions() -> None:
    """aiokafka 0.14: ``Fetcher.fetched_records(partitions, timeout, max_records)``, which Faust's consumer
    thread calls with the set the handover copies."""
    fetched_records = aiokafka.consumer.fetcher.Fetcher.fetched_records
    assert list(inspect.signature(fetched_records).parameters)[:3] == ["self", "partitions", "timeout"]


def test_faust_rocksdb_store_keeps_what_the_worker_reads_of_it(tmp_path: Path) -> None:
    """faust-streaming 0.15 with rocksdict 0.3: one raw-mode Rdict per partition in ``Store._dbs``, opened
    by ``_db_for_partition``; ``_key_index``, ``_decode_value``, ``offset_key``, ``set_persisted_offset``."""
    app = faust.App("pins-rocksdb", store="rocksdb://", datadir=str(tmp_path), autodiscover=False)
    table = app.Table("cases", partitions=2)
    store: Any = table.data
    assert store.use_rocksdict is True
    database = store._db_for_partition(1)
    assert isinstance(database, rocksdict.Rdict)
    assert store._dbs == {1: database}
    assert isinstance(store._key_index, MutableMapping)
    assert isinstance(store.offset_key, bytes)
    assert callable(store.set_persisted_offset)
    # Raw mode: what is written with a raw WriteBatch (streams/storage.py) reads back through the store.
    batch = rocksdict.WriteBatch(raw_mode=True)
    batch.put(b"c1", store._encode_value({"a": 1}))
    database.write(batch)
    assert store._decode_value(database[b"c1"]) == {"a": 1}
    for opened in store._dbs.values():
        opened.close()


def test_faust_memory_store_keeps_its_key_partitions() -> None:
    """faust-streaming 0.15: the memory store's ``data`` dict and ``_key_partition`` (streams/storage.py)."""
    table = faust.App("pins-memory", store="memory://", autodiscover=False).Table("cases", partitions=2)
    store: Any = table.data
    assert isinstance(store.data, dict) and isinstance(store._key_partition, dict)


def test_faust_app_keeps_its_blueprints_recovery_event_and_flow_control() -> None:
    """faust-streaming 0.15 and mode-streaming 0.7: ``app.web.blueprints`` (emptied by
    streams/web_access.py), ``app.tables.recovery.completed`` (streams/context.py) and ``app.flow_control``
    with suspend/resume (streams/handover.py)."""
    app = faust.App("pins-app", autodiscover=False)
    assert isinstance(app.web.blueprints, BlueprintManager)
    tables: Any = app.tables  # typed as the TableManagerT interface, which has no recovery
    assert isinstance(tables.recovery.completed, asyncio.Event)
    app.flow_control.suspend()
    assert not app.flow_control.is_active()
    app.flow_control.resume()
    assert app.flow_control.is_active()
