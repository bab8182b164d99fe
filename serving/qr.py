"""QR codes for the phone preview: PNG (the code beside the model's name, version, metrics and
creation time, as PAI's preview page shows them), SVG, and a terminal rendering."""

from __future__ import annotations

import io
import socket
from pathlib import Path

import qrcode
import qrcode.image.svg
from PIL import Image, ImageDraw, ImageFont

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def lan_ip() -> str:
    """This host's address on the local network (the route to a private address; nothing is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def _code(url: str) -> qrcode.QRCode:
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4, box_size=8)
    code.add_data(url)
    code.make(fit=True)
    return code


def card_png(url: str, lines: list[str]) -> bytes:
    """The QR code with `lines` of text beside it."""
    qr = _code(url).make_image(fill_color="black", back_color="white").get_image().convert("RGB")
    font = ImageFont.truetype(str(FONT), 18) if FONT.is_file() else ImageFont.load_default()
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = max((draw.textlength(line, font=font) for line in lines), default=0)
    card = Image.new("RGB", (qr.width + int(text_w) + 40, max(qr.height, 30 * len(lines) + 40)), "white")
    card.paste(qr, (0, 0))
    pen = ImageDraw.Draw(card)
    for i, line in enumerate(lines):
        pen.text((qr.width + 10, 30 + 30 * i), line, fill="black", font=font)
    buf = io.BytesIO()
    card.save(buf, format="PNG")
    return buf.getvalue()


def svg(url: str) -> bytes:
    buf = io.BytesIO()
    _code(url).make_image(image_factory=qrcode.image.svg.SvgPathImage).save(buf)
    return buf.getvalue()


def terminal(url: str) -> str:
    """The code in half-block characters (two modules per character row), dark on a light terminal."""
    matrix = _code(url).get_matrix()
    rows = []
    for y in range(0, len(matrix), 2):
        top, bottom = matrix[y], matrix[y + 1] if y + 1 < len(matrix) else [False] * len(matrix[y])
        rows.append("".join("█" if not t and not b else "▀" if not t else "▄" if not b else " " for t, b in zip(top, bottom)))
    return "\n".join(rows)
