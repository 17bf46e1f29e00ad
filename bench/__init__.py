"""rooflab: measure a GPU's (or CPU's) real roofline and feed it into an LLM-inference roofline model."""
__version__ = "0.1.0"
