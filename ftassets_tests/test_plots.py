import base64
import re

from ftassets.plots import loss_curve, markdown_image


def test_loss_curve_is_an_embedded_png():
    markdown = markdown_image(
        loss_curve([(1, 3.0), (5, 2.0), (10, 1.2)], [(5, 2.2), (10, 1.5)], "tiny-lora on classification"), "loss curve"
    )
    match = re.fullmatch(r"!\[loss curve\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", markdown)
    assert match, markdown[:80]
    png = base64.b64decode(match.group(1))
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 2000
