"""Kubernetes API adapter: credentials, the httpx client, watches, events and status writes."""
