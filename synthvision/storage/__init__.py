"""The storage edge: the output store (fsspec), shard tars, the prompt table, the writer lock, commits."""
