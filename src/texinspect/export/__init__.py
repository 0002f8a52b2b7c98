"""Model export for other runtimes (``texinspect export``)."""
