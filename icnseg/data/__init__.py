"""VOC-layout reader, synthetic shapes generator, transforms."""
