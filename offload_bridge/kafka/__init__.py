"""The one Kafka layer: every client of the project connects, reads and places records through it.

- ``connection``: one ``KafkaConnection`` read from Settings, rendered for kafka-python (admin, CLI,
  submitters), aiokafka (inside the worker), Faust and librdkafka (the ingress producer);
  the client factories;
- ``reading``: assign every partition of a topic, read a topic to its end;
- ``partitioning``: the partition of a key, as Kafka's Java default partitioner computes it;
- ``faust_topics``: the worker's Faust topic of a registry entry;
- ``admin``: create the registry's topics;
- ``local_broker``: the broker this repository runs on the JVM for development and tests.
"""
