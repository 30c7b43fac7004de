"""Artefact formats export writes and the runtime reads: manifest, engine cache, TensorRT env."""
