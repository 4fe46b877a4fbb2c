"""What an operator does with a deployed platform, behind one protocol (``platform``): the cloud
(``cloud``) and its local twin (``local``); AWS errors explained in one line (``aws_errors``)."""
