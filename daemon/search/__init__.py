"""Answering "which images look like this": the per-extractor indexes (HNSW, Annoy, the exact fresh
part), their snapshots and measured recall, scoped and combined queries, duplicates and time ranges.
Reads the store; drives nothing."""
