"""The producer's partitioner (app/partitioner.py): Kafka's default partition for every key, from memory."""
from __future__ import annotations

import random

from aiokafka.partitioner import DefaultPartitioner, murmur2 as aiokafka_murmur2

from app.partitioner import CachedPartitioner, murmur2


def test_partitioner__picks_exactly_kafkas_default_partition_for_every_key():
    # A key must land where Kafka's Java clients, Faust's view routing and aiokafka's default would put it.
    rnd = random.Random(7)
    keys = [rnd.randbytes(rnd.randint(0, 40)) for _ in range(2000)] + [b"v_card_1", b"cust_1", b"\x00\xff"]
    cached, default = CachedPartitioner(max_keys=100), DefaultPartitioner()
    for n in (1, 2, 3, 8, 12, 100):
        parts = list(range(n))
        for key in keys + keys[:50]:  # repeats: answered from memory
            assert cached(key, parts, parts) == default(key, parts, parts)
            assert cached(key, range(n), range(n)) == default(key, parts, parts)  # as the cards stage asks
    assert len(cached._hashes) <= 100


def test_murmur2__is_kafkas_for_every_length():
    rnd = random.Random(11)
    for length in range(0, 70):  # every remainder mod 4, short and long keys
        for _ in range(30):
            data = rnd.randbytes(length)
            assert murmur2(data) & 0x7FFFFFFF == aiokafka_murmur2(data) & 0x7FFFFFFF
    # Kafka's own test vectors (clients' UtilsTest.testMurmur2), as positive partitioner inputs
    assert murmur2(b"21") & 0x7FFFFFFF == -973932308 & 0x7FFFFFFF
    assert murmur2(b"foobar") & 0x7FFFFFFF == -790332482 & 0x7FFFFFFF
    assert murmur2(b"a-little-bit-long-string") & 0x7FFFFFFF == -985981536 & 0x7FFFFFFF


def test_partitioner__a_record_without_key_goes_to_an_available_partition():
    cached = CachedPartitioner()
    assert {cached(None, [0, 1, 2, 3], [2]) for _ in range(20)} == {2}

