"""Transfer-learning benchmark suite for brain MRI classification."""
__version__ = "0.1.0"
