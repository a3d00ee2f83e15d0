"""The preprocessing contract: every mode to RGB, EXIF, draft mode, multi-frame, formats, and bad input."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from contracts.preprocessing import (
    IMAGE_EXTENSIONS, IMAGE_FORMATS, DecodeOptions, ImageTooLarge, InvalidImage, UnsupportedImage, decode_image,
    load_rgb, resize_crop,
)
from tests.contracts.samples import png_bomb, save
from tests.lomar_serve.photos import encode, photo_array, photo_bytes

OPTIONS = DecodeOptions(size=(224, 224))
FULL = DecodeOptions(size=(64, 64), crop_fraction=1.0)  # whole image, for checking colours


def _solid(mode: str, size=(96, 64), color=None) -> Image.Image:
    return Image.new(mode, size, color)


def test_photo_jpeg_becomes_model_input():
    out = decode_image(photo_bytes("astronaut"), OPTIONS)
    assert out.shape == (3, 224, 224) and out.dtype == np.uint8 and out.flags["C_CONTIGUOUS"]
    assert out.std() > 20  # real content, not a flat image


def test_non_square_is_centre_cropped():
    # Left half red, right half blue, 300x100: the centre crop straddles the border, so both colours appear.
    array = np.zeros((100, 300, 3), np.uint8)
    array[:, :150, 0] = 255
    array[:, 150:, 2] = 255
    out = decode_image(encode(array, "PNG"), FULL)
    assert out[0, :, :28].min() > 200 and out[2, :, 36:].min() > 200


def test_jpeg_draft_mode_matches_full_decode():
    data = photo_bytes("hubble_deep_field")  # 1000x872: draft decodes at 1/2 or 1/4
    drafted = decode_image(data, OPTIONS).astype(np.float64)
    full = Image.open(io.BytesIO(data)).convert("RGB")
    reference = decode_image(encode(np.asarray(full), "PNG"), OPTIONS).astype(np.float64)
    assert np.abs(drafted - reference).mean() < 6.0


def test_jpeg_is_decoded_in_draft_mode(monkeypatch):
    from PIL import JpegImagePlugin

    scales = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = original(self, mode, size)
        scales.append(result[1] if result else None)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    decode_image(photo_bytes("hubble_deep_field"), OPTIONS)
    assert scales and scales[0][2] <= 500  # 1000x872 decoded at half size or less


@pytest.mark.parametrize("mode,color,expected", [
    ("L", 128, (128, 128, 128)),
    ("1", 1, (255, 255, 255)),
    ("P", None, None),
    ("CMYK", (0, 255, 255, 0), (255, 0, 0)),  # cyan 0, magenta and yellow full = red
    ("RGBA", (255, 0, 0, 0), (255, 255, 255)),  # fully transparent red on white = white
    ("RGBA", (0, 0, 255, 255), (0, 0, 255)),
    ("LA", (0, 128), (127, 127, 127)),  # half-transparent black on white
])
def test_modes_to_rgb(mode, color, expected):
    image = _solid(mode, color=color)
    if mode == "P":
        image = _solid("RGB", color=(10, 200, 30)).quantize(4)
        expected = image.convert("RGB").getpixel((0, 0))
    fmt = "TIFF" if mode in ("CMYK", "LA") else "PNG"
    out = decode_image(save(image, fmt), FULL)
    assert np.abs(out[:, 32, 32].astype(int) - np.array(expected)).max() <= 1


def test_palette_with_transparency_is_composited_on_white():
    image = _solid("P", color=0)
    image.putpalette([0, 0, 0] * 256)
    out = decode_image(save(image, "PNG", transparency=0), FULL)
    assert out.min() == 255


def test_16_bit_greyscale_is_scaled_not_clipped():
    array = np.full((64, 64), 32768, dtype=np.uint16)  # mid grey in 16 bits
    out = decode_image(save(Image.fromarray(array), "PNG"), FULL)
    assert Image.open(io.BytesIO(save(Image.fromarray(array), "PNG"))).mode.startswith("I")
    assert abs(int(out[0, 10, 10]) - 128) <= 1


def test_exif_orientation_is_applied():
    array = np.zeros((64, 128, 3), np.uint8)  # landscape: left half white
    array[:, :64] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = save(Image.fromarray(array), "JPEG", exif=exif.tobytes(), quality=95)
    out = decode_image(data, DecodeOptions(size=(32, 32), crop_fraction=1.0))
    # Displayed upright it is portrait with the white half on top.
    assert out[:, :12].mean() > 200 and out[:, 20:].mean() < 50


def test_multi_frame_uses_first_frame():
    frames = [_solid("RGB", color=(255, 0, 0)), _solid("RGB", color=(0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    out = decode_image(buffer.getvalue(), FULL)
    assert out[0].mean() > 200 and out[2].mean() < 50


def test_webp_and_bmp():
    for fmt in ("WEBP", "BMP"):
        assert decode_image(encode(photo_array("coffee"), fmt), OPTIONS).shape == (3, 224, 224)


@pytest.mark.parametrize("data,error", [
    (b"", InvalidImage),
    (b"hello, this is a text file\n" * 10, UnsupportedImage),
    (encode(np.zeros((1, 1, 3), np.uint8), "PNG"), InvalidImage),
    (photo_bytes("astronaut")[:5000], InvalidImage),  # truncated JPEG
    (png_bomb(), ImageTooLarge),
])
def test_bad_inputs(data, error):
    with pytest.raises(error) as raised:
        decode_image(data, OPTIONS)
    assert raised.value.message


def test_bomb_file_is_small_and_limit_is_checked_before_decoding():
    assert len(png_bomb()) < 1000
    # Below Pillow's own limit but above ours: refused from the header alone.
    with pytest.raises(ImageTooLarge, match="pixels"):
        decode_image(png_bomb(8000, 8000), DecodeOptions(size=(224, 224), max_pixels=10_000_000))


def test_invalid_options():
    with pytest.raises(ValueError):
        DecodeOptions(size=(0, 224))
    with pytest.raises(ValueError):
        DecodeOptions(size=(224, 224), crop_fraction=1.5)


def test_path_and_bytes_decode_alike(tmp_path):
    data = photo_bytes("chelsea")
    (tmp_path / "chelsea.jpg").write_bytes(data)
    np.testing.assert_array_equal(decode_image(tmp_path / "chelsea.jpg", OPTIONS), decode_image(data, OPTIONS))


def test_empty_file_is_invalid(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InvalidImage):
        load_rgb(tmp_path / "empty.png")


def test_full_resolution_load_keeps_size_and_limits_apply():
    data = photo_bytes("hubble_deep_field")  # 1000x872 JPEG: no draft reduction without a target size
    assert load_rgb(data).size == (1000, 872)
    assert load_rgb(data, DecodeOptions(size=(224, 224))).size[0] <= 500
    with pytest.raises(ImageTooLarge):
        load_rgb(data, max_pixels=100_000)


def test_decode_is_load_then_resize_crop():
    data = photo_bytes("rocket")
    np.testing.assert_array_equal(decode_image(data, OPTIONS), resize_crop(load_rgb(data, OPTIONS), OPTIONS))


def test_formats_outside_the_list_are_refused():
    data = save(Image.new("RGB", (32, 32), (1, 2, 3)), "ICO")  # Pillow reads ICO, the contract does not
    with pytest.raises(UnsupportedImage, match="JPEG"):
        decode_image(data, OPTIONS)


def test_extensions_follow_the_formats():
    assert {".jpg", ".jpeg", ".png", ".webp", ".gif", ".tif", ".tiff", ".bmp", ".ppm"} <= set(IMAGE_EXTENSIONS)
    assert ".ico" not in IMAGE_EXTENSIONS and ".eps" not in IMAGE_EXTENSIONS
    registered = Image.registered_extensions()
    assert all(registered[extension] in IMAGE_FORMATS + ("MPO",) for extension in IMAGE_EXTENSIONS)
