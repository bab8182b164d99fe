"""Per-image checks shared by every format: decode, truncation, size, decompression bombs, colour mode."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

MIN_SIDE = 30
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb threshold
# the formats Pillow may decode here: never EPS/PS (it runs Ghostscript on the file's code), nor any other plugin
# Pillow would try on bytes that claim to be an image (a phone's multi-picture JPEG opens as JPEG, then says MPO)
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")


def open_image(source) -> Image.Image:
    """Image.open restricted to FORMATS (a path or a binary file); UnidentifiedImageError for anything else."""
    return Image.open(source, formats=FORMATS)


@dataclass(frozen=True)
class ImageCheck:
    sha256: str
    width: int = 0
    height: int = 0
    mode: str = ""
    problem: str | None = None  # an issue code when the image cannot be used


def check_image(path: Path) -> ImageCheck:
    """Decode `path` fully (so truncation is caught) and report its size, mode and content hash."""
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with open_image(io.BytesIO(data)) as img:
                width, height = img.size
                if width * height > MAX_PIXELS:
                    return ImageCheck(digest, width, height, img.mode, "DECOMPRESSION_BOMB")
                img.load()
                mode = img.mode
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return ImageCheck(digest, problem="DECOMPRESSION_BOMB")
    except (OSError, SyntaxError, ValueError, Image.UnidentifiedImageError):
        return ImageCheck(digest, problem="CORRUPT_IMAGE")
    if min(width, height) < MIN_SIDE:
        return ImageCheck(digest, width, height, mode, "IMAGE_TOO_SMALL")
    return ImageCheck(digest, width, height, mode)


def load_rgb(path: Path) -> Image.Image:
    """Open an image file as RGB."""
    with open_image(path) as img:
        return to_rgb(img)


def to_rgb(img: Image.Image) -> Image.Image:
    """An RGB copy of `img` (the one place colour modes are converted; transparency becomes white)."""
    if img.mode == "RGB":
        return img.copy()
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def letterbox(image: Image.Image, size: int) -> tuple[Image.Image, float, tuple[int, int]]:
    """Resize keeping the aspect ratio into a size x size canvas (grey padding right and bottom)."""
    scale = size / max(image.size)
    # half up, as JavaScript's Math.round on the phone page (Python's round() is half to even)
    w, h = max(1, int(image.size[0] * scale + 0.5)), max(1, int(image.size[1] * scale + 0.5))
    canvas = Image.new("RGB", (size, size), (114, 114, 114))
    canvas.paste(image.resize((w, h), Image.Resampling.BILINEAR), (0, 0))
    return canvas, scale, (0, 0)
