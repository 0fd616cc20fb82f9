"""Pictures as files: opening and decoding them within a memory budget, their formats, what they say
about themselves (photo metadata) and their thumbnails. Uses only the top modules."""
