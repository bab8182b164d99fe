"""A seeded generator of OCR data for tests, the demo and the quality benchmark: words, numbers, prices, dates and
Chinese phrases rendered with Debian's fonts (DejaVu in six styles, Noto Sans/Serif CJK) onto varied backgrounds
(scikit-image's photos, gradients, noise, plain paper, sign plates), turned, blurred and JPEG-compressed.

`scenes` draws whole images with text regions (4-point polygons clockwise from the text's top-left, as ICDAR
2015 gives them); `crops` draws word and line images. Another seed gives other texts, fonts, backgrounds and angles.
The writers in factory.tasks.ocr.formats put either in any OCR layout.
"""

from __future__ import annotations

import io
import math
import random
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from factory.datasets.synthetic import load_photos, photo_crop
from factory.errors import MissingDependencyError
from factory.i18n import has_han

DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
NOTO = Path("/usr/share/fonts/opentype/noto")
LATIN_FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Italic.ttf",
               "DejaVuSansMono.ttf", "DejaVuSansCondensed-Bold.ttf")
CJK_FONTS = ("NotoSansCJK-Regular.ttc", "NotoSansCJK-Bold.ttc", "NotoSerifCJK-Regular.ttc")
WORDS = ("EXIT", "OPEN", "Total", "Cash", "Change", "Station", "Meter", "Water", "Gas", "Reading", "Invoice", "Date",
         "Coffee", "Bakery", "Parking", "Street", "Market", "Price", "Serial", "Model", "Battery", "Voltage", "Line",
         "north", "south", "hello", "world", "receipt", "number", "store", "sale", "fresh", "daily", "Pharmacy",
         "Hotel", "Garage", "Kitchen", "Office", "Tax", "Amount", "Qty", "Item", "Bus", "Stop", "Road", "Avenue")
CHINESE = ("收银台", "合计", "找零", "现金", "发票", "日期", "电表读数", "水表", "燃气", "停车场", "出口", "入口", "营业时间",
           "欢迎光临", "价格", "数量", "单价", "总计", "会员卡", "餐厅", "药店", "超市", "便利店", "咖啡", "面包", "早餐",
           "北京路", "人民广场", "地铁站", "公交站", "安全出口", "禁止吸烟", "小心地滑", "编号", "型号", "电压", "电池")


def _number(rng: random.Random) -> str:
    kind = rng.randrange(5)
    if kind == 0:
        return f"{rng.randint(0, 9999):d}"
    if kind == 1:
        return f"{rng.uniform(0.1, 999):.2f}"
    if kind == 2:
        return f"20{rng.randint(10, 29)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    if kind == 3:
        return f"{rng.choice('ABCDEFGHKLMNPRSTUVXYZ')}{rng.randint(100, 99999)}"
    return f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}"


def text_sample(rng: random.Random, languages: tuple[str, ...]) -> tuple[str, str]:
    """(text, language): a word, a number-like string, a two-word phrase, or a Chinese phrase."""
    lang = rng.choice(languages)
    if lang == "zh":
        text = rng.choice(CHINESE)
        return (text + _number(rng) if rng.random() < 0.2 else text), "zh"
    roll = rng.random()
    if roll < 0.35:
        word = rng.choice(WORDS)
        return rng.choice((word, word.upper(), word.lower())), "en"
    if roll < 0.7:
        return _number(rng), "en"
    return f"{rng.choice(WORDS)} {_number(rng)}", "en"


@lru_cache(maxsize=64)
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    path = (NOTO if name.endswith(".ttc") else DEJAVU) / name
    if not path.is_file():
        package = "fonts-noto-cjk" if name.endswith(".ttc") else "fonts-dejavu-core"
        raise MissingDependencyError(f"The font {path} is missing.", fix=f"Install the Debian package {package} "
                                                                         "(scripts/setup does).")
    return ImageFont.truetype(str(path), size)


def font_for(rng: random.Random, lang: str, size: int) -> ImageFont.FreeTypeFont:
    names = CJK_FONTS if lang == "zh" or rng.random() < 0.15 else LATIN_FONTS  # CJK fonts draw Latin too
    return _font(rng.choice(names), size)


@dataclass
class Scene:
    image: Image.Image
    regions: list[dict] = field(default_factory=list)  # {"points": [[x, y] x 4], "text": str}


@lru_cache(maxsize=1)
def _photos() -> list[Image.Image]:
    return load_photos()


def background(rng: random.Random, width: int, height: int) -> Image.Image:
    kind = rng.random()
    if kind < 0.35:
        return photo_crop(rng.choice(_photos()), rng, max(width, height)).crop((0, 0, width, height))
    if kind < 0.6:
        a, b = (np.array([rng.randrange(256) for _ in range(3)], np.float32) for _ in range(2))
        t = np.linspace(0, 1, width if rng.random() < 0.5 else height, dtype=np.float32)
        ramp = a + (b - a) * t[:, None]
        grid = np.broadcast_to(ramp[None], (height, width, 3)) if len(t) == width else np.broadcast_to(ramp[:, None], (height, width, 3))
        return Image.fromarray(grid.astype(np.uint8), "RGB")
    if kind < 0.8:
        base = np.array([rng.randrange(180, 256) for _ in range(3)], np.float32)  # paper
        noise = np.random.default_rng(rng.randrange(2**31)).normal(0, rng.uniform(2, 12), (height, width, 1))
        return Image.fromarray((base + noise).clip(0, 255).astype(np.uint8), "RGB")
    noise = np.random.default_rng(rng.randrange(2**31)).integers(0, 256, (height, width, 3))
    return Image.fromarray(noise.astype(np.uint8), "RGB").filter(ImageFilter.GaussianBlur(rng.uniform(1, 4)))


def _ink(rng: random.Random, under: np.ndarray) -> tuple[int, int, int]:
    """A text colour that stands out from the mean colour under it."""
    light = under.mean() > 127
    return tuple(rng.randrange(0, 90) if light else rng.randrange(170, 256) for _ in range(3))


def _text_patch(rng: random.Random, text: str, lang: str, size: int, under: np.ndarray) -> tuple[Image.Image, tuple]:
    """The text on a transparent patch (with a sign plate behind it at times), and the text's box on the patch."""
    font = font_for(rng, lang, size)
    left, top, right, bottom = font.getbbox(text)
    pad = max(2, size // 6)
    width, height = right - left + 2 * pad, bottom - top + 2 * pad
    patch = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(patch)
    if rng.random() < 0.3:  # a plate: the text is read on it
        plate = tuple(rng.randrange(256) for _ in range(3))
        draw.rectangle((0, 0, width - 1, height - 1), fill=(*plate, 255))
        under = np.array(plate, np.float32)
    draw.text((pad - left, pad - top), text, font=font, fill=(*_ink(rng, under), 255))
    return patch, (pad / 2, pad / 2, width - pad / 2, height - pad / 2)


def _turned(box: tuple, angle: float, size: tuple[int, int], turned_size: tuple[int, int]) -> list[list[float]]:
    """The four corners of `box` (clockwise from top-left) after PIL's rotate(angle, expand=True)."""
    (w, h), (tw, th) = size, turned_size
    t = math.radians(angle)
    out = []
    for x, y in ((box[0], box[1]), (box[2], box[1]), (box[2], box[3]), (box[0], box[3])):
        dx, dy = x - w / 2, y - h / 2
        out.append([dx * math.cos(t) + dy * math.sin(t) + tw / 2, -dx * math.sin(t) + dy * math.cos(t) + th / 2])
    return out


def _finish(rng: random.Random, image: Image.Image) -> Image.Image:
    if rng.random() < 0.4:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    if rng.random() < 0.6:
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=rng.randint(35, 92))
        image = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return image


def scene(rng: random.Random, width: int = 320, height: int = 240, languages: tuple[str, ...] = ("en",),
          max_regions: int = 6, max_angle: float = 12.0) -> Scene:
    """An image with 1 to `max_regions` non-overlapping text regions."""
    img = background(rng, width, height)
    pixels = np.asarray(img, np.float32)
    taken: list[tuple[float, float, float, float]] = []
    regions = []
    for _ in range(rng.randint(1, max_regions)):
        text, lang = text_sample(rng, languages)
        size = rng.randint(14, max(15, height // 7))
        for _attempt in range(8):
            x0, y0 = rng.randrange(0, max(1, width // 2)), rng.randrange(0, max(1, height - size))
            patch, box = _text_patch(rng, text, lang, size, pixels[y0:y0 + size, x0:x0 + size].reshape(-1, 3).mean(0)
                                     if y0 < height and x0 < width else np.zeros(3))
            angle = rng.uniform(-max_angle, max_angle)
            turned = patch.rotate(angle, expand=True, resample=Image.Resampling.BICUBIC)
            quad = [[x + x0, y + y0] for x, y in _turned(box, angle, patch.size, turned.size)]
            xs, ys = [p[0] for p in quad], [p[1] for p in quad]
            bounds = (min(xs), min(ys), max(xs), max(ys))
            inside = bounds[0] >= 0 and bounds[1] >= 0 and bounds[2] < width and bounds[3] < height
            if inside and not any(bounds[0] < t[2] + 4 and t[0] < bounds[2] + 4 and bounds[1] < t[3] + 4 and
                                  t[1] < bounds[3] + 4 for t in taken):
                img.paste(turned, (x0, y0), turned)
                taken.append(bounds)
                regions.append({"points": [[round(x, 1), round(y, 1)] for x, y in quad], "text": text})
                break
    return Scene(_finish(rng, img), regions)


def crop(rng: random.Random, languages: tuple[str, ...] = ("en",), height: int = 48,
         text: str | None = None) -> tuple[Image.Image, str]:
    """A word or line image about `height` pixels high (a little text margin, a slight tilt) and its text (`text`
    when given, drawn with a CJK font when it holds Han characters)."""
    if text is None:
        text, lang = text_sample(rng, languages)
    else:
        lang = "zh" if has_han(text) else "en"
    size = int(height * rng.uniform(0.55, 0.8))
    probe = font_for(random.Random(0), lang, size)
    width = int(probe.getlength(text)) + height
    img = background(rng, max(width, 8), height)
    patch, _ = _text_patch(rng, text, lang, size, np.asarray(img, np.float32).reshape(-1, 3).mean(0))
    turned = patch.rotate(rng.uniform(-2.5, 2.5), expand=True, resample=Image.Resampling.BICUBIC)
    canvas = img.resize((max(width, turned.width + 4), max(height, turned.height + 2)))
    canvas.paste(turned, ((canvas.width - turned.width) // 2, (canvas.height - turned.height) // 2), turned)
    return _finish(rng, canvas), text
