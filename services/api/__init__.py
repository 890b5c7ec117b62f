"""HTTP API: routers under a version prefix, and their dependencies."""
