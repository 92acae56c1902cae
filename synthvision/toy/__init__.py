"""The toy world: small *trained* models on real Fashion-MNIST images, built so that the demo and the
tests go through exactly the code paths real checkpoints go through (a GLIDE weights folder, an
open_clip `local-dir:` checkpoint), but with weights that know something. Scripts here train them
(`python -m synthvision.toy --help`); the trained files ship in `synthvision/data/toy/`."""
