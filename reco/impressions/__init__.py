"""Impressions: every served list, recorded off the request path through a bounded buffer."""
