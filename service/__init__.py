"""Certificate vault service: bulk intake, verified PDFs and public verification."""

__version__ = "0.1.0"
