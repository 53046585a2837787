"""Inference: one path from texts to logits (tokenize, length-sorted batches, forward, original order),
on the device and precision chosen for the machine it runs on; probabilities, top-k, metrics and the
`Predictor` that `predict`, `evaluate`, serving and export verification share."""
