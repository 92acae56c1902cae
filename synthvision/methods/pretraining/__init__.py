"""Training ResNets on synthetic shards (paper section 3.3): supervised and MoCo v2 pre-training,
training from scratch, and transfer to a real dataset; resumable from checkpoints in run storage."""
