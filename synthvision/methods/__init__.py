"""The paper's methods by name: CLIP filter, SCE, classifier tuning, few-shot, ResNet pre-training."""
