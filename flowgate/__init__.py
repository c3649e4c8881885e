"""flowgate: a self-hosted gateway for AI image and video generation."""

__version__ = "0.1.0"
