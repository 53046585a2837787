"""Deployment: export a run as a transformers folder, a peft adapter or ONNX, verified against the run."""
