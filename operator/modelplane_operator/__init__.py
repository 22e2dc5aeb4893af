"""modelplane: a Kubernetes operator that serves open models with vLLM for AutoGen agents."""
