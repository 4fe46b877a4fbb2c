"""Metric lines are a contract with SageMaker metric definitions; progress bars only for people."""

import re

from training.metrics import METRIC_REGEXES, format_metrics


def test_progress_bar_only_for_a_person_watching():
    from training.metrics import progress_wanted

    class Tty:
        def isatty(self):
            return True

    assert progress_wanted(Tty(), env={}) is True
    assert progress_wanted(object(), env={}) is False
    assert progress_wanted(object(), env={"MLOPS_PROGRESS": "1"}) is True
    assert progress_wanted(Tty(), env={"MLOPS_PROGRESS": "0"}) is False


def test_metric_lines_match_the_sagemaker_regexes():
    line = format_metrics(
        {
            "step": 5,
            "train_loss": 1.25,
            "learning_rate": 3e-4,
            "tokens_per_second": 221.5,
            "padding_fraction": 0.105,
            "eval_loss": 0.5,
        }
    )
    assert line.startswith("metrics step=5 ")
    values = {key: float(re.search(rx, line).group(1)) for key, rx in METRIC_REGEXES.items()}
    assert values == {
        "train_loss": 1.25,
        "eval_loss": 0.5,
        "learning_rate": 3e-4,
        "tokens_per_second": 221.5,
        "padding_fraction": 0.105,
    }
