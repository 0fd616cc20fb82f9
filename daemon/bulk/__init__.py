"""Work on a whole library at once: the Ray backfill (its cluster-side worker and status) and
vectors in and out as Parquet files."""
