"""The operator CLI (`mlops`). The SageMaker pipeline definition and the local executor arrive with later issues."""
