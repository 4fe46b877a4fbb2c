"""The SageMaker Pipeline definition, generated offline from the config with the SageMaker SDK v3:
``builder`` (the steps), ``parameters`` (what a run may override), ``placeholders`` (deploy-time
values), ``sdk`` (the offline session)."""
