import io

import numpy as np
from PIL import Image

from datapruner.embed.decode import decode_image


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
    import pytest

    from datapruner.embed.decode import UnusableSample, decode_image

    reasons = set()
    for _ in range(3):
        with pytest.raises(UnusableSample) as err:
            decode_image(b"not an image at all" * 8)
        reasons.add(str(err.value))
    (reason,) = reasons
    assert reason == "undecodable image: UnidentifiedImageError: cannot identify image file <_io.BytesIO>"
