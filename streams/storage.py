"""Tables whose values are pydantic models: the model's JSON in the changelog (and the rocksdb store),
keys written raw.

Faust derives a table's serializers from its key and value types and falls back to JSON, which would
write the key ``c1`` as ``"c1"``: a different partition hash than the raw key of the source topic, so
query routing and co-partitioning would miss. With the memory store Faust keeps the model object itself,
so an agent never re-parses its own state.

Some values must be on the broker before the agent goes on (``pending`` before ``POST /cases``, or a
crash right after the call could forget it). Faust buffers changelog writes and gives no handle on them,
so a table keeps the future of its last changelog write for ``put_durably`` to await.
"""

from __future__ import annotations

import asyncio
from typing import Any, Generic, TypeVar

import faust
from faust.serializers.codecs import Codec
from pydantic import BaseModel

from offload_bridge.settings import Settings

M = TypeVar("M", bound=BaseModel)


class PydanticCodec(Codec, Generic[M]):
    """A model as its JSON; ``exclude_defaults`` leaves fields at their defaults out (smaller records)."""

    def __init__(self, model: type[M], exclude_defaults: bool = False) -> None:
        super().__init__()
        self.model = model
        self.exclude_defaults = exclude_defaults

    def _dumps(self, obj: Any) -> bytes:
        value: M = obj
        return value.model_dump_json(exclude_defaults=self.exclude_defaults).encode()

    def _loads(self, s: bytes) -> Any:
        return self.model.model_validate_json(s)


class ModelTable(faust.Table[str, M], Generic[M]):
    """A Table[str, M] with raw keys and model values, whose last changelog write can be awaited."""

    def __init__(self, app: Any, *, model: type[M], exclude_defaults: bool = False, **kwargs: Any) -> None:
        super().__init__(app, key_type=str, **kwargs)
        self.key_serializer = "raw"
        self.codec: PydanticCodec[M] = PydanticCodec(model, exclude_defaults)
        self.value_serializer = self.codec
        self.last_write: asyncio.Future[Any] | None = None

    def send_changelog(self, *args: Any, **kwargs: Any) -> Any:
        future = super().send_changelog(*args, **kwargs)
        self.last_write = future
        return future

    async def put_durably(self, key: str, value: M, timeout_s: float) -> None:
        """Set ``key`` and wait until the broker acknowledged the changelog record. Raises TimeoutError."""
        self[key] = value
        if self.last_write is not None:
            await asyncio.wait_for(asyncio.shield(self.last_write), timeout_s)


def add_model_table(
    app: faust.App,
    name: str,
    model: type[M],
    partitions: int,
    help: str,
    exclude_defaults: bool = False,
    store_options: dict[str, Any] | None = None,
) -> ModelTable[M]:
    """A ModelTable added to the app; ``partitions`` must equal those of the topic its agent reads.
    ``store_options``: what the store opens each partition with (``store_options(settings)``).
    """
    table: ModelTable[M] = ModelTable(
        app, model=model, exclude_defaults=exclude_defaults, name=name, partitions=partitions,
        beacon=app.tables.beacon, help=help, options=store_options,
    )  # fmt: skip
    app.tables.add(table)
    return table


def store_options(settings: Settings) -> dict[str, Any]:
    """The sizes each rocksdb partition database opens with (Faust's ``RocksDBOptions``); the memory
    store ignores them.

    Faust's defaults are for a machine of its own: 64 MB memtables, three of them, and a 2 GiB block
    cache, per partition database. Memtables fill with every write until flushed, so a worker folding
    a large backlog grew by hundreds of MB over its 6 partitions; the settings keep it to about
    ``partitions * (2 * write buffer + block cache)`` per table at most.
    """
    mb = 1024 * 1024
    return {
        "write_buffer_size": settings.offload_worker_rocksdb_write_buffer_mb * mb,
        "max_write_buffer_number": 2,
        "block_cache_size": settings.offload_worker_rocksdb_block_cache_mb * mb,
    }


def write_local(
    table: ModelTable[M], partition: int, items: list[tuple[str, M, bytes]], changelog: Any, offset: int
) -> None:
    """Put ``items`` (key, value, the value as the table's codec encodes it) of one partition into the
    table's local store without writing the changelog again.

    For writers that sent the changelog records themselves and had them acknowledged (the case-state
    batch); ``offset`` is the last of them. Faust's stores pick the partition from the current event,
    which a batch written after its events has not, so this addresses the partition itself: rocksdb's
    database of the partition, written as one batch, then the changelog offset it now holds (what Faust
    stores after each changelog write, so a restart replays only what came later); the memory store's
    dict, as its own changelog replay fills it.
    """
    store: Any = table.data
    if hasattr(store, "_db_for_partition"):
        import rocksdict

        writes = rocksdict.WriteBatch(raw_mode=True)
        for key, _, encoded in items:
            raw_key = key.encode()
            writes.put(raw_key, encoded)
            store._key_index[raw_key] = partition
        store._db_for_partition(partition).write(writes)
        store.set_persisted_offset(changelog, offset)
        return
    for key, value, _ in items:
        store.data[key] = value
        store._key_partition[key] = partition
