"""Development tools shared by scripts/ and tests/: scenario generator, embedded broker, Kafka and worker helpers.

Not part of the installed package (`pip install .` leaves it out).
"""
