"""Training: configs, data collation and packing, the accelerate training loop, vision pretraining."""
