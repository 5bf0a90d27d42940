"""gooseui: an operator console for Kubernetes-isolated Goose agent environments."""

__version__ = "0.1.0"
