"""Two-stage training: stage 1 classifier, stage 2 ICN."""
