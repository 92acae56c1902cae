"""Models and their loading: CLIP, the generators (GLIDE, diffusers), the sentence model, devices."""
