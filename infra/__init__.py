"""CDK constructs and stacks. Empty until the infrastructure issue: no stack exists yet."""
