"""The placement rule: our partition of a key is the one Kafka's Java producer computes."""

from __future__ import annotations

import random
import uuid

import pytest
from kafka.partitioner.default import murmur2

from offload_bridge.kafka.partitioning import partition_for
from tests.kafka_java import java_partitions

# Kafka's own known answers for murmur2 (clients/src/test/.../common/utils/UtilsTest.java, testMurmur2).
KAFKA_MURMUR2_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("key", "expected"), KAFKA_MURMUR2_VECTORS.items())
def test_murmur2_matches_kafkas_known_answers(key: bytes, expected: int) -> None:
    signed = murmur2(key)
    signed = signed - 2**32 if signed >= 2**31 else signed
    assert signed == expected
    # toPositive, then modulo: what partition_for must give.
    assert partition_for(key, 6) == (expected & 0x7FFFFFFF) % 6


def test_partition_for_agrees_with_kafkas_java_producer_on_2000_keys() -> None:
    rng = random.Random(11)
    keys: list[bytes] = [b"", b"a", "é".encode(), "案件".encode(), b"\x00\xff" * 40]
    keys += [str(uuid.UUID(int=rng.getrandbits(128))).encode() for _ in range(1200)]
    keys += [f"req-{n:03d}".encode() for n in range(300)]
    keys += [bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 64))) for _ in range(495)]
    counts = (1, 3, 6, 7, 12, 100)
    asked = [(key, counts[n % len(counts)]) for n, key in enumerate(keys)]
    assert len(asked) >= 2000
    ours = [partition_for(key, count) for key, count in asked]
    assert ours == java_partitions(asked)


def test_partition_for_refuses_a_topic_without_partitions() -> None:
    with pytest.raises(ValueError, match="at least one partition"):
        partition_for("c1", 0)
