"""integrity: files that cannot be used as they are."""
from __future__ import annotations

from ..limits import DEFAULT_LIMITS, human_bytes
from .registry import finding, register

CHECKS = {
    "empty_file": "The file is 0 bytes.",
    "unreadable": "The file is not an image Pillow can decode (e.g. a text file named .jpg), or cannot be read.",
    "truncated": "The image data ends early: the decoder ran out of bytes (an interrupted copy or download).",
    "decompression_bomb": "The header claims more pixels than the safety limit; it was not decoded.",
    "format_mismatch": "The extension says one format but the content is another (e.g. a PNG named .jpg).",
    "path_outside_root": "The path resolves outside the dataset root ('..', absolute, or an escaping symlink); never opened.",
    "missing_file": "The file is listed (manifest/annotations) but does not exist on disk.",
    "file_too_large": "The file is larger than the cap on a file read into memory (max_file_bytes, "
                      f"{human_bytes(DEFAULT_LIMITS['max_file_bytes'])} by default); it was not read. Raise the cap "
                      "with --limit max_file_bytes=N.",
}
# Formats that a given extension may legitimately hold (MPO is a multi-picture JPEG from cameras).
COMPATIBLE = {"JPEG": {"JPEG", "MPO"}, "TIFF": {"TIFF"}, "PNG": {"PNG"}, "GIF": {"GIF"},
              "BMP": {"BMP", "DIB"}, "WEBP": {"WEBP"}}


@register("integrity", CHECKS)
def check_integrity(ctx):
    out = []
    img = ctx.images
    for image_id, kind, detail in zip(img["image_id"], img["error_kind"], img["error_detail"]):
        if isinstance(kind, str) and kind in CHECKS:
            out.append(finding(image_id, kind, 1.0, detail))
    ok = img["error_kind"].isna() & img["format"].notna() & img["ext_format"].notna()
    for image_id, fmt, ext in zip(img.loc[ok, "image_id"], img.loc[ok, "format"], img.loc[ok, "ext_format"]):
        if fmt not in COMPATIBLE.get(ext, {ext}):
            out.append(finding(image_id, "format_mismatch", 1.0,
                               f"extension says {ext} but the content is {fmt}; rename it to the right extension "
                               "or re-encode it (some loaders pick the decoder from the extension)"))
    return out
