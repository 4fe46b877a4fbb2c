"""The entrypoint's command line: every default of `evaluate` and `compile` comes from its settings dataclass."""

from dataclasses import asdict

from config.schema import EvaluationSection, ServingSection
from containers.entrypoint import build_parser
from inference.compile import CompileSettings
from inference.evaluate import EvalSettings


def test_evaluate_flags_default_to_eval_settings():
    args = vars(build_parser().parse_args(["evaluate"]))
    defaults = asdict(EvalSettings())
    for name in ("batch_size", "max_new_tokens", "max_seq_length", "prompt_length"):
        assert args[name] == defaults[name], name


def test_compile_flags_default_to_compile_settings():
    args = vars(build_parser().parse_args(["compile", "--target", "cpu"]))
    assert CompileSettings(**{k: args[k] for k in asdict(CompileSettings(target="cpu"))}) == CompileSettings(
        target="cpu"
    )


def test_config_defaults_are_the_settings_defaults():
    evaluation, serving = EvaluationSection(), ServingSection()
    assert (evaluation.batch_size, evaluation.max_new_tokens) == (
        EvalSettings.batch_size,
        EvalSettings.max_new_tokens,
    )
    for name in ("batch_size", "sequence_length", "tensor_parallel_size", "dtype"):
        assert getattr(serving, name) == getattr(CompileSettings, name), name
