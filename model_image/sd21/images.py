"""Images as the API returns them (the server's response, the job worker's result)."""
from __future__ import annotations

import io


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)  # speed over size: PNGs of 512x512 are small anyway
    return buffer.getvalue()
