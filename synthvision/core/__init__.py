"""The pure core: config, label spaces, prompts, planning, manifests, hashes. No torch, fsspec or PIL."""
