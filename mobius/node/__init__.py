"""The virtual node: registration, status and the Lease heartbeat."""
