"""The media types of the formats ``formats`` reads beyond Pillow's own, by the kind ``formats.sniff`` names.

Apart from ``formats`` because that module imports the decoders (rawpy brings numpy), so a
module that wants only the media types (``api.routes_files``: the types ``/original`` answers)
need not load them. It was split out when the CLI imported the API's spec (the CLI started in
75 ms without the decoders and 300-500 ms with them); the CLI now reads ``api.bounds`` instead
and loads neither (``tests/media/test_formats.py`` checks).
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
