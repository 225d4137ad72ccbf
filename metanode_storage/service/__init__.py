"""The long-running `distributed start` service: an HTTP API over the engine, and the
backup manager that keeps repairing replicas."""
