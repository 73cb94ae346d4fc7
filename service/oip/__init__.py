"""The Open Inference Protocol (KServe v2 / Triton HTTP) beside the v1 API (issue 7)."""
