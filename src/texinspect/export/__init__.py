"""Model export for other runtimes: ONNX (``texinspect export --format onnx``), checked against
PyTorch at export so that a served ONNX model answers like the trained one."""
