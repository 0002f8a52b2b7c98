"""What every family's training shares: the trainer contract, the loop, checkpoints and exact
resume, DDP, the held-out data split and the one synthetic validation every family is measured by."""
