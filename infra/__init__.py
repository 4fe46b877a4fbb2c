"""The CDK constructs and stacks that ``app.py`` composes: one construct per unit (``foundation``,
``images``, ``tracking``, ``pipeline``, ``deploy/``), ``stacks`` wiring them, ``nag`` for cdk-nag."""
