"""texinspect: unsupervised defect detection on textured surfaces (RB-AE and FMR-Net)."""

__version__ = "0.1.0"
