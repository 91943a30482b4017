"""Start-up steps that run before Faust: wait for the broker, bulk-restore tables."""
