"""Triton's binary tensor extension, which `tritonclient.http` uses by default.

A body may be a JSON header followed by raw tensor bytes; the header's length travels
in `Inference-Header-Content-Length`, and each binary tensor names its byte size in
`parameters.binary_data_size`. BYTES elements are 4-byte little-endian lengths + bytes.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

from service.body_limit import byte_count
from service.errors import ApiError

HEADER = "Inference-Header-Content-Length"

#: OIP datatype -> little-endian numpy dtype for the fixed-size types we send or accept.
DTYPES = {"FP32": "<f4", "FP64": "<f8", "INT64": "<i8", "INT32": "<i4", "BOOL": "|b1"}


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """(JSON part, binary part) of a request body."""
    if header_length is None:
        return body, b""
    n = byte_count(header_length)
    if n is None or n > len(body):
        raise ApiError(
            400,
            "invalid_binary_header",
            f"{HEADER} must be a byte count within the body (got {header_length!r})",
        )
    return body[:n], body[n:]


def take_chunks(sizes: list[int | None], blob: bytes) -> list[bytes | None]:
    """Cut the binary part into one chunk per tensor that declared a size, in order."""
    chunks: list[bytes | None] = []
    pos = 0
    for size in sizes:
        if size is None:
            chunks.append(None)
            continue
        if size < 0:
            raise ApiError(400, "invalid_binary_data", f"binary_data_size must be 0 or more, got {size}")
        if pos + size > len(blob):
            raise ApiError(
                400,
                "invalid_binary_data",
                f"binary_data_size runs past the end of the body ({size} bytes declared, {len(blob) - pos} left)",
            )
        chunks.append(blob[pos : pos + size])
        pos += size
    if pos != len(blob):
        raise ApiError(
            400,
            "invalid_binary_data",
            f"{len(blob) - pos} bytes after the binary tensors are unaccounted for",
        )
    return chunks


def to_bytes(datatype: str, values: np.ndarray | list[str]) -> bytes:
    if datatype == "BYTES":
        return b"".join(
            struct.pack("<I", len(b)) + b for b in (v.encode() for v in values)
        )
    return np.ascontiguousarray(values, dtype=DTYPES[datatype]).tobytes()


def encode(header: dict[str, Any], chunks: list[bytes]) -> tuple[bytes, int]:
    """JSON header + the binary chunks; returns (body, header length)."""
    head = json.dumps(header, separators=(",", ":")).encode()
    return head + b"".join(chunks), len(head)
