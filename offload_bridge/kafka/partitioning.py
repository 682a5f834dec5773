"""The one placement rule: the partition Kafka's Java default partitioner gives a key.

Every record keyed by caseId or requestId goes to ``toPositive(murmur2(keyBytes)) % partitions``, the
formula of Kafka's ``BuiltInPartitioner`` for keyed records. kafka-python and aiokafka use it by default;
librdkafka (confluent-kafka) does only with ``partitioner=murmur2_random`` (its default is CRC32). Tables,
query routing and the reconciler's "is this case mine" all rely on producers agreeing with it.
"""

from __future__ import annotations

from kafka.partitioner.default import murmur2

# librdkafka's name for Kafka's default partitioner (murmur2 for keyed records, random for null keys).
LIBRDKAFKA_PARTITIONER = "murmur2_random"


def partition_for(key: bytes | str, partitions: int) -> int:
    """The partition of ``key`` among ``partitions``, as Kafka's Java producer computes it."""
    if partitions < 1:
        raise ValueError(f"a topic has at least one partition, got {partitions}")
    data = key.encode() if isinstance(key, str) else key
    hashed: int = murmur2(data)
    # Utils.toPositive: drop the sign bit (not abs(), which differs for negative values).
    return (hashed & 0x7FFFFFFF) % partitions
