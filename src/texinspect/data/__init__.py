"""Images on disk: the dataset layout, loading and checking images, the sample set, DVC/S3 transfer.

Below every model: it knows folders and pixels, not families or training.
"""
