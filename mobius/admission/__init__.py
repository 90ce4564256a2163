"""Admission webhooks Mobius serves: every Service becomes headless (no virtual IPs here)."""
