"""Writers of run outputs: JSON records, overlay PNGs, annotated videos."""
