import numpy as np
from PIL import Image

from synthvision.reports.contact_sheet import LINE_HEIGHT, render


def test_contact_sheet_grid_with_captions():
    samples = [
        (Image.new("RGB", (32, 32), colour), f"a photo of a {name}")
        for colour, name in [((255, 0, 0), "red"), ((0, 0, 255), "blue"), ((0, 255, 0), "green")]
    ]
    sheet = np.asarray(render(samples, columns=2, cell=64, caption_lines=2))
    row = 64 + 2 * LINE_HEIGHT + 4
    assert sheet.shape == (2 * row, 128, 3)
    assert (
        sheet[10, 10].tolist() == [255, 0, 0]
        and sheet[10, 74].tolist() == [0, 0, 255]
        and sheet[row + 10, 10].tolist() == [0, 255, 0]
    )
    caption = sheet[64:row, 0:64]
    assert (caption < 128).any() and (caption == 255).any()  # dark text on white
    assert (sheet[row:, 64:] == 255).all()  # the empty fourth cell stays blank
