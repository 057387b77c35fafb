"""Logs, metrics and readiness: how an operator sees the service."""
