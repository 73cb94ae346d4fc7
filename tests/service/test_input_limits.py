"""Limits that must hold *before* work is done: pixels never decoded, bodies never read whole.

Plus the inputs that are converted rather than refused, and the rule that JSON bodies
with pydantic models forbid unknown fields.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import ExifTags, Image, ImageFile

from service.app import create_app
from service.decode import decode_image
from service.errors import ApiError
from service.settings import Settings
from tests.service import hostile as h

LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def client(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    url = f"sqlite:///{tmp_path_factory.mktemp('limits') / 'log.db'}"
    with TestClient(create_app(Settings(model_dir=tiny_bundle, database_url=url, migrate_on_start=True, max_upload_bytes=LIMIT))) as c:
        yield c


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every pixel decode (Image.load) in this process, any thread."""
    calls: list[str] = []
    original = ImageFile.ImageFile.load

    def spy(self: ImageFile.ImageFile) -> Any:
        calls.append(f"{self.format} {self.size}")
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    return calls


@pytest.mark.parametrize("side", [20_000, 6_000])
def test_bomb_is_refused_without_decoding_pixels(loads: list[str], side: int) -> None:
    data = h.bomb_png(side)
    assert len(data) < 60_000  # a few tens of kB that claim side x side pixels
    with pytest.raises(ApiError) as e:
        decode_image(data, max_pixels=25_000_000, max_side=10_000)
    assert (e.value.status, e.value.code) == (413, "image_too_large")
    assert loads == []
    decode_image(h.encode(h.digit(), "PNG"), 25_000_000, 10_000)  # control: the spy does see a decode
    assert loads == ["PNG (28, 28)"]


def test_bomb_over_http_never_decodes(client: TestClient, loads: list[str]) -> None:
    r = client.post("/v1/predict", content=h.bomb_png(), headers={"content-type": "image/png"})
    assert r.status_code == 413 and loads == []


def test_oversized_chunked_upload_is_refused_while_streaming(client: TestClient) -> None:
    """No Content-Length, 16 MiB offered in 16 KiB chunks: refused after about LIMIT bytes."""
    chunk, total = 16 * 1024, 1024
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"\0" * chunk, "more_body": pulled < total}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def call() -> None:
        headers = [(b"content-type", b"image/png"), (b"transfer-encoding", b"chunked"), (b"host", b"testserver")]
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http", "path": "/v1/predict",
                 "raw_path": b"/v1/predict", "query_string": b"", "root_path": "", "headers": headers, "client": ("127.0.0.1", 50000), "server": ("testserver", 80)}  # fmt: skip
        await client.app(scope, receive, send)

    assert client.portal is not None
    client.portal.call(call)
    assert sent[0]["status"] == 413
    assert pulled <= LIMIT // chunk + 2, f"read {pulled} chunks of {total}: the body was not refused while streaming"


@pytest.mark.parametrize(
    ("case", "data"),
    [
        ("16-bit-png", h.sixteen_bit_png()),
        ("palette-png", h.encode(h.digit("P"), "PNG")),
        ("palette-transparency-png", h.encode(h.digit("P"), "PNG", transparency=0)),
        ("cmyk-jpeg", h.encode(h.digit("CMYK"), "JPEG")),
        ("rgba-png", h.encode(h.digit("RGBA"), "PNG")),
        ("la-png", h.encode(h.digit("LA"), "PNG")),
        ("1-bit-bmp", h.encode(h.digit("1"), "BMP")),
        ("float-tiff", h.encode(h.digit().convert("F"), "TIFF")),
        ("large-photo-like", h.encode(h.digit("RGB", 1200), "JPEG")),
        # 4x the working size or more: Pillow's thumbnail reduces first, which 16-bit cannot
        ("large-16-bit-png", h.sixteen_bit_png(5000)),
    ],
)
def test_unusual_images_are_converted_not_refused(client: TestClient, case: str, data: bytes) -> None:
    r = client.post("/v1/predict", files={"image": (f"{case}.img", data, "application/octet-stream")})
    assert r.status_code == 200, r.text
    assert abs(sum(r.json()["probabilities"]) - 1) < 1e-3


def test_json_bodies_forbid_unknown_fields(client: TestClient) -> None:
    """Every JSON request body in the OpenAPI contract refuses fields it does not know.

    The OIP/KServe v2 endpoints are the documented exception: they ignore extras on
    purpose (protocol clients send vendor keys such as Triton's `sequence_id`).
    """
    spec = client.get("/openapi.json").json()
    schemas = spec.get("components", {}).get("schemas", {})
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            content = op.get("requestBody", {}).get("content", {}).get("application/json")
            if content is None or path.startswith("/v2/"):
                continue
            ref = content["schema"].get("$ref", "")
            schema = schemas.get(ref.rsplit("/", 1)[-1], content["schema"])
            assert schema.get("additionalProperties") is False, f"{method.upper()} {path} accepts unknown fields"


def _rss_mb(field: str) -> int:
    line = next(ln for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith(field))
    return int(line.split()[1]) // 1024


def test_large_image_is_converted_from_a_reduced_copy() -> None:
    """A 5000x5000 PNG of 30 kB: its header size is kept, but no full-size float copy is made.

    Converting it at full size peaked at +262 MB (measured before the reduction).
    """
    from models.manifest import InputSpec
    from models.preprocess import to_model_input

    data = h.encode(h.digit("L", 5000), "PNG")
    before = _rss_mb("VmRSS:")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current size
    img = decode_image(data, max_pixels=25_000_000, max_side=10_000)
    x = to_model_input(img.image, InputSpec())
    assert (img.width, img.height) == (5000, 5000) and max(img.image.size) <= 1024
    assert tuple(x.shape) == (1, 28, 28) and float(x.max()) > 0.2
    assert _rss_mb("VmHWM:") - before < 150


#: How the pixels are stored for each EXIF orientation, given the upright picture: the
#: inverse of the turn a viewer applies (ImageOps.exif_transpose).
STORED_AS = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270, 5: Image.Transpose.TRANSPOSE}


def _exif_cases() -> list[tuple[int, str, int]]:
    """(orientation, format, side): every turn as a lossless PNG of the digit's own 28 px, and
    what phones send: a JPEG, large enough that it is thumbnailed (service/decode.py)."""
    return [(o, "PNG", 28) for o in sorted(STORED_AS)] + [(6, "JPEG", 2048), (8, "JPEG", 2048)]


@pytest.mark.parametrize(("orientation", "fmt", "side"), _exif_cases())
def test_an_exif_rotated_photo_is_read_upright(orientation: int, fmt: str, side: int) -> None:
    """A phone stores a 7 on its side plus an orientation tag; every viewer shows it upright,
    and so must the model see it (it read such a 7 as a 4, accepted)."""
    from models.manifest import InputSpec
    from models.preprocess import to_model_input

    upright = Image.open(Path(__file__).parents[2] / "service/static/gallery/clear-7.png").convert("L").resize((side, side), Image.Resampling.BICUBIC)
    stored = upright.transpose(STORED_AS[orientation])
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    tagged, untagged = h.encode(stored, fmt, exif=exif), h.encode(stored, fmt)

    def model_input(data: bytes) -> torch.Tensor:
        return to_model_input(decode_image(data, max_pixels=25_000_000, max_side=10_000).image, InputSpec())

    want = model_input(h.encode(upright, fmt))
    # PNG keeps the pixels exactly; JPEG's blocks and the thumbnail's resampling differ a little
    # between a picture and its turned copy, far less than between the digit and its turn.
    tolerance = 0.0 if fmt == "PNG" else 0.1
    assert float((model_input(tagged) - want).abs().max()) <= tolerance
    assert float((model_input(untagged) - want).abs().max()) > 0.5  # the digit is not symmetric under the turn


@pytest.mark.parametrize("ink", [255, 0])
def test_a_digit_on_a_transparent_canvas_is_read_whatever_its_ink(ink: int) -> None:
    """Drawing apps export strokes on a transparent canvas, white or black: both are the digit.
    A white stroke used to land on white paper, an empty image rejected as out of distribution."""
    from models.manifest import InputSpec
    from models.preprocess import to_model_input

    seven = Image.open(Path(__file__).parents[2] / "service/static/gallery/clear-7.png").convert("L")
    canvas = Image.merge("RGBA", (*(Image.new("L", seven.size, ink),) * 3, seven))  # the stroke is the opacity

    def model_input(img: Image.Image) -> torch.Tensor:
        return to_model_input(decode_image(h.encode(img, "PNG"), max_pixels=25_000_000, max_side=10_000).image, InputSpec())

    want = model_input(seven)
    assert float((model_input(canvas) - want).abs().max()) <= 1 / 255 + 1e-6
    assert float(want.max()) > 0.9  # a digit, not an empty frame
