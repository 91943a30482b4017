"""Test-only helpers: the broker choice (external, Docker Kafka, embedded), the scenario's reference model, shared
steps of the integration tests, the pure-logic driver. Worker processes, Kafka I/O and the generator: devtools/."""
