"""Serving icnseg with Triton Inference Server via PyTriton (``pip install 'icnseg[serve]'``)."""
