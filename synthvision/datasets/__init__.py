"""Real labelled image sets: Fashion-MNIST idx files, tars and folders, the colour demo set."""
