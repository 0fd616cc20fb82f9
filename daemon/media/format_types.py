"""The media types of the formats ``formats`` reads beyond Pillow's own, by the kind ``formats.sniff`` names.

Apart from ``formats`` because that module imports the decoders (rawpy brings numpy):
``openapi``, which the CLI imports, needs only these names (the CLI started in 75 ms
without them and 300-500 ms with them).
"""

from __future__ import annotations

CONTENT_TYPES = {
    "HEIF": "image/heif",
    "HEIC": "image/heic",
    "AVIF": "image/avif",
    "DNG": "image/x-adobe-dng",
    "CR2": "image/x-canon-cr2",
    "CR3": "image/x-canon-cr3",
    "NEF": "image/x-nikon-nef",
    "ARW": "image/x-sony-arw",
    "PEF": "image/x-pentax-pef",
    "RAF": "image/x-fuji-raf",
    "ORF": "image/x-olympus-orf",
    "RW2": "image/x-panasonic-rw2",
    "RAW": "application/octet-stream",
}
