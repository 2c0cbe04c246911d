import io
import json
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from datapruner.embed.decode import UnusableSample, decode_image, image_bytes, text_fields
from datapruner.reasons import category_of


def _jpeg(w: int, h: int) -> bytes:
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 127 // (w + h)], -1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def test_large_jpegs_decode_at_a_reduced_scale_that_still_covers_the_model_input():
    data = _jpeg(640, 480)
    small = decode_image(data, min_size=100)
    assert small.size == (160, 120)  # 1/4 scale: the smallest with both sides >= 100
    full = decode_image(data)
    assert full.size == (640, 480)
    a = np.asarray(small.resize((100, 75)), np.float32)
    b = np.asarray(full.resize((100, 75)), np.float32)
    assert np.abs(a - b).mean() < 2.0  # the same picture after the model's resize


def test_small_images_and_pngs_are_decoded_whole():
    assert decode_image(_jpeg(40, 40), min_size=32).size == (40, 40)
    buf = io.BytesIO()
    Image.new("RGB", (400, 300)).save(buf, format="PNG")
    assert decode_image(buf.getvalue(), min_size=32).size == (400, 300)


def test_an_unidentifiable_image_has_the_same_reason_every_time():
    reasons = set()
    for _ in range(3):
        with pytest.raises(UnusableSample) as err:
            decode_image(b"not an image at all" * 8)
        reasons.add(str(err.value))
    (reason,) = reasons
    assert reason == "undecodable image: UnidentifiedImageError: cannot identify image file <_io.BytesIO>"


# every way a sample's data is unusable is an UnusableSample of a known category ---------------------------

def _png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h)).save(buf, format="PNG")
    return buf.getvalue()


def _huge_png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width × height: decoding it would take gigabytes, reading its size none."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _unusable(call) -> str:
    with pytest.raises(UnusableSample) as err:
        call()
    return str(err.value)


def test_an_image_over_max_pixels_is_refused_from_its_header():
    got = _unusable(lambda: decode_image(_huge_png_header(30000, 20000)))
    assert got == ("image too large: 30000×20000 = 600000000 pixels > max_image_pixels 200000000 "
                   "(raise max_image_pixels and max_full_decode_pixels to keep it)")  # a PNG: over both
    assert category_of(_unusable(lambda: decode_image(_png(100, 100), max_pixels=9999))) == "image too large"
    assert decode_image(_png(100, 100), max_pixels=10000).size == (100, 100)


def test_pils_own_pixel_cap_is_replaced_by_max_pixels(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL would call 100×100 a decompression bomb
    assert decode_image(_png(100, 100)).size == (100, 100)


def _fields(**members) -> dict:
    return text_fields({"jpg": b"", **members}, "caption", "label")


@pytest.mark.parametrize("cls", [b"\xff\xfe", b"cat", b"", b"3.0", str(2 ** 63).encode(), b"9" * 5000])
def test_a_cls_that_is_not_an_int64_is_a_bad_label(cls):
    assert category_of(_unusable(lambda: _fields(cls=cls))) == "bad label"


@pytest.mark.parametrize("label", [True, 2.5, "cat", [1], {"a": 1}, 2 ** 63, -(2 ** 63) - 1])
def test_a_json_label_that_is_not_int_like_is_a_bad_label(label):
    assert category_of(_unusable(lambda: _fields(json=json.dumps({"label": label}).encode()))) == "bad label"


def test_labels_that_are_ints():
    assert _fields(cls=b" 7\n")["label"] == 7
    assert _fields(cls=str(-(2 ** 63)).encode())["label"] == -(2 ** 63)
    assert [_fields(json=json.dumps({"label": v}).encode())["label"] for v in [3, 3.0, " 4", None]] == [3, 3, 4, None]
    assert _fields(cls=b"2", json=b'{"label": "cat"}')["label"] == 2  # cls wins; the json field is not read


@pytest.mark.parametrize("raw", [b"{caption: ", b"[1, 2]", b'"text"', b"\xff{}", b"[" * 100000, b""])
def test_json_that_does_not_parse_or_is_not_an_object_is_bad_json(raw):
    assert category_of(_unusable(lambda: _fields(json=raw))) == "bad json"


@pytest.mark.parametrize("caption", [5, ["a", "b"], {"a": 1}, True, "\ud800"])
def test_a_json_caption_that_is_not_a_string_is_a_bad_caption(caption):
    assert category_of(_unusable(lambda: _fields(json=json.dumps({"caption": caption}).encode()))) == "bad caption"


def test_captions_and_uids():
    assert _fields(txt=b"a \xff caption", json=b'{"caption": 5}')["caption"] == "a \ufffd caption"  # txt wins
    assert _fields(json=b'{"caption": "from json", "uid": 12}') == {"caption": "from json", "label": None, "uid": "12"}
    assert _fields(json=b'{"uid": "\\ud800x"}')["uid"] == "\\ud800x"  # storable in Arrow
    assert _fields() == {"caption": None, "label": None, "uid": None}


def test_no_image_and_the_reasons_are_the_same_every_time():
    assert _unusable(lambda: image_bytes({"txt": b"x", "cls": b"1"})) == (
        "no image: no image member (looked for jpg, jpeg, png, webp; found cls, txt)")
    bad = {"jpg": b"\xff\xd8\xff\xe0 not really a jpeg", "json": b"[" * 100000}
    for call in (lambda: decode_image(bad["jpg"]), lambda: _fields(json=bad["json"])):
        assert len({_unusable(call) for _ in range(3)}) == 1


def test_a_png_over_max_full_decode_pixels_is_refused_from_its_header_naming_the_setting():
    got = _unusable(lambda: decode_image(_huge_png_header(4097, 4096)))
    assert got == ("image too large: PNG of 4097×4096 = 16781312 pixels > max_full_decode_pixels 16777216 "
                   "(formats other than JPEG are decoded at full size: raise max_full_decode_pixels to keep it)")
    # at the cap the size passes, and the (fake) pixel data is what fails
    assert category_of(_unusable(lambda: decode_image(_huge_png_header(4096, 4096)))) == "undecodable image"
    raised = _unusable(lambda: decode_image(_huge_png_header(4097, 4096), full_decode_pixels=4097 * 4096))
    assert category_of(raised) == "undecodable image"  # the setting raised: the size passes
    assert "max_image_pixels 5000" in _unusable(lambda: decode_image(_png(100, 60), max_pixels=5000))


def test_an_image_over_both_limits_names_both_settings_and_a_jpeg_only_max_image_pixels():
    png = _unusable(lambda: decode_image(_huge_png_header(30000, 20000), full_decode_pixels=10**6))
    assert png.endswith("> max_image_pixels 200000000 (raise max_image_pixels and max_full_decode_pixels to keep it)")
    jpeg = _unusable(lambda: decode_image(_jpeg(100, 60), max_pixels=5000, full_decode_pixels=10))
    assert jpeg.endswith("> max_image_pixels 5000 (raise max_image_pixels to keep it)")
    assert decode_image(_jpeg(100, 60), full_decode_pixels=10).size == (100, 60)  # JPEGs decode at any scale


def _palette_png_with_byte_transparency() -> tuple[bytes, Image.Image]:
    img = Image.new("P", (8, 8))
    img.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    img.frombytes(bytes(i % 3 for i in range(64)))
    buf = io.BytesIO()
    img.save(buf, format="PNG", transparency=bytes([0, 128, 255]))
    return buf.getvalue(), img


def test_a_palette_png_with_byte_transparency_decodes_to_the_same_rgb_without_a_warning():
    data, original = _palette_png_with_byte_transparency()
    assert isinstance(Image.open(io.BytesIO(data)).info["transparency"], bytes)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        got = decode_image(data)
    assert got.mode == "RGB" and got.tobytes() == original.convert("RGB").tobytes()
