"""Inference side of the lifecycle: evaluation, packaging/compilation for serving, and the HTTP server."""
