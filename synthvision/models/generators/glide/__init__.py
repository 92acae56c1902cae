"""GLIDE (filtered), the paper's generator: model, diffusion, tokenizer and the backend that samples it."""
