"""The HTTP API: a Quart app served by Hypercorn inside the root task group."""
