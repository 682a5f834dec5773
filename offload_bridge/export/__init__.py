"""``offload-bridge export``: the fact topics as Parquet files, exactly once (see ``exporter``)."""
