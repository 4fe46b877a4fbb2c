"""Model loading, generation and the SageMaker-contract HTTP server. Empty until the serving issue."""
