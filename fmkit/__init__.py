"""fmkit: detect manipulated faces (deepfakes) and explain the detections."""

__version__ = "0.1.0"
