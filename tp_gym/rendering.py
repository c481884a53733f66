"""`render_mode="rgb_array"`: the last observation's text drawn as an image.

For video recorders and RL tooling that ask every env for frames (stable-baselines3's
`make_vec_env` makes envs with ``render_mode="rgb_array"``). Drawn with Pillow's built-in
font, imported on first use; wrapped to the frame's width, cut at its height.
"""

from __future__ import annotations

import textwrap

import numpy as np

FRAME_WIDTH = 640
FRAME_HEIGHT = 480
MARGIN = 8
LINE_HEIGHT = 12
CHARS_PER_LINE = 100


def text_frame(text: str) -> np.ndarray:
    """`text` on a white `(FRAME_HEIGHT, FRAME_WIDTH, 3)` uint8 frame, black, wrapped."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (FRAME_WIDTH, FRAME_HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    rows = (FRAME_HEIGHT - 2 * MARGIN) // LINE_HEIGHT
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        lines += textwrap.wrap(paragraph, CHARS_PER_LINE) or [""]
        if len(lines) >= rows:
            break
    for row, line in enumerate(lines[:rows]):
        # The built-in font covers Latin-1; other characters show as '?'.
        shown = line.encode("latin-1", "replace").decode("latin-1")
        draw.text((MARGIN, MARGIN + row * LINE_HEIGHT), shown, fill="black", font=font)
    return np.asarray(image, dtype=np.uint8)
