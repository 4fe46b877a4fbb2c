"""Everything that runs on the operator's side, not in the images: the pipeline ``definition``, the
``local`` executor, ``operate`` (cloud and local twins behind one protocol), ``cost``, and ``cli``
(the ``mlops`` command). Dependencies point down that list: cli -> operate -> local/cost -> definition."""
