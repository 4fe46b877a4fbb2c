"""What a pipeline run and a day of the endpoint cost: ``estimate`` from the config, ``prices`` from
the dated table that the AWS Price List fills."""
