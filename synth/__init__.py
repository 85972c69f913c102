"""synth: ReMixer data synthesis (PyTorch / vLLM) writing ArrayRecord for rejax."""
