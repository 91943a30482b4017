"""Test helpers: brokers, worker processes, Kafka I/O and the scenario generator with its reference model."""
