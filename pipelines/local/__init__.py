"""The local executor: runs the very same definition JSON on this machine (``run``), step by step
(``executor``, ``expressions``), each job in an ``/opt/ml`` folder (``jobs``), with S3 as a local folder
(``store``), MLflow as the registry (``registry``) and a local endpoint (``endpoint``); ``view`` shows
the steps live. ``train`` runs the FineTune job alone (``mlops train --local``), on the base model
that ``base_model`` provides."""
