"""The Kubernetes side of the console: manifests, API calls, readiness, endpoints."""
