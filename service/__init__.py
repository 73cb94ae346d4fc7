"""The HTTP service: app factory, routes, decoding, inference runtime, policy, request log."""
