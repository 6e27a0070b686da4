"""Opening images: limits checked on the header before decoding, decoding bounded to a pixel cap."""

import pytest
from PIL import Image

from bad_input_files import write_blank_png
from longvlm.ingest.images import (DECODE_MAX_PIXELS, MAX_ASPECT_RATIO, MAX_IMAGE_PIXELS, image_size,
                                     open_image)
from longvlm.errors import InputError
from longvlm.options import Options


def test_limits_are_stated():
    assert MAX_ASPECT_RATIO == 200 and MAX_IMAGE_PIXELS == 180_000_000 and DECODE_MAX_PIXELS == 4096 ** 2


def test_size_comes_from_the_header_and_bombs_are_refused(tmp_path):
    bomb = write_blank_png(tmp_path / "bomb.png", 30000, 30000, bit_depth=1)
    with pytest.raises(InputError, match=r"900,000,000 pixels, above the limit of 180,000,000 pixels") as err:
        image_size(bomb)
    assert str(err.value).startswith(f"{bomb}: ")
    with pytest.raises(InputError, match="pixels"):
        open_image(bomb)
    assert image_size(write_blank_png(tmp_path / "big.png", 9000, 7000)) == (7000, 9000)


@pytest.mark.parametrize("size", [(4000, 16), (16, 4000), (1, 0)])
def test_extreme_aspect_ratio_is_refused(tmp_path, size):
    path = tmp_path / "thin.png"
    if size[1]:
        write_blank_png(path, *size)
    else:
        path.write_bytes(b"")
    with pytest.raises(InputError, match="aspect ratio" if size[1] else "empty"):
        open_image(path)


def test_big_png_decodes_within_the_cap(tmp_path):
    path = write_blank_png(tmp_path / "big.png", 6000, 3000)
    image = open_image(path, max_pixels=1_000_000)
    assert image.mode == "RGB" and image.width * image.height <= 1_000_000
    assert image.width / image.height == pytest.approx(2.0, rel=0.01)
    assert open_image(path).width * open_image(path).height <= DECODE_MAX_PIXELS < 6000 * 3000
    small = write_blank_png(tmp_path / "small.png", 3000, 2000)
    assert open_image(small).size == (3000, 2000)  # under the cap: as is


def test_jpeg_decodes_at_reduced_scale(tmp_path):
    path = tmp_path / "photo.jpg"
    Image.linear_gradient("L").resize((4000, 3000)).convert("RGB").save(path, quality=80)
    image = open_image(path, max_pixels=500_000)
    assert image.mode == "RGB" and 400_000 < image.width * image.height <= 500_000
    assert image.width / image.height == pytest.approx(4 / 3, rel=0.01)


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGBA", "I;16", "CMYK"])
def test_every_mode_comes_back_rgb_and_averaged(tmp_path, mode):
    source = Image.linear_gradient("L").resize((1200, 800))
    image = source.convert(mode) if mode != "I;16" else source.convert("I").point(lambda v: v * 256).convert("I;16")
    path = tmp_path / f"im.{'tif' if mode in ('I;16', 'CMYK') else 'png'}"
    image.save(path)
    out = open_image(path, max_pixels=20_000)
    assert out.mode == "RGB" and out.width * out.height <= 20_000
    assert open_image(image, max_pixels=20_000).size == out.size  # a PIL image the same way


def test_broken_files_name_the_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        open_image(tmp_path / "missing.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(InputError, match="unreadable image"):
        image_size(tmp_path / "text.png")
    good = write_blank_png(tmp_path / "good.png", 500, 500)
    cut = tmp_path / "cut.png"
    data = good.read_bytes()
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(InputError, match="cut.png: corrupt image data"):
        open_image(cut)


def test_encode_images_plans_from_headers_and_decodes_one_at_a_time(tmp_path, monkeypatch):
    from longvlm.pipeline import encode as inputs
    from longvlm.vlm.loading import load_vlm

    vlm = load_vlm("tiny-qwen2-vl")
    big = write_blank_png(tmp_path / "big.png", 5000, 4000)
    opened = []
    real_open = inputs.open_image

    def spy(image, max_pixels):
        out = real_open(image, max_pixels=max_pixels)
        opened.append(out.width * out.height)
        return out

    monkeypatch.setattr(inputs, "open_image", spy)
    encoded = inputs.encode_images(vlm, [str(big), str(big)], Options(max_visual_tokens=600))
    assert encoded.stats["visual_tokens"] == encoded.stats["planned_visual_tokens"] <= 600
    assert len(opened) == len(encoded.plan.items) == 2
    assert all(n <= 4 * item.height * item.width for n, item in zip(opened, encoded.plan.items))
