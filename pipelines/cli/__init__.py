"""The ``mlops`` command. ``app`` is the root and the one error boundary; each other module is one
command group (or the root's own commands), and ``options`` holds what they share. A group never
imports the root."""
