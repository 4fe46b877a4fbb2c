"""Trn2 (ml.trn2.48xlarge) as an endpoint target in the config: which types a config may serve on, that one
artifact serves one family, and the compile target the endpoint decides. The planner's side is in
test_plan.py, the compile and serve edges in test_compile_and_serving_settings.py and test_neuron_serve.py,
the deployer's in test_deployer.py and test_deploy_rules.py."""

import pytest

from config import load_config
from config.loader import ConfigError

TRN2 = ("infra.endpoint.instance_type=ml.trn2.48xlarge", "serving.instance_types=[ml.trn2.48xlarge]")


def test_a_trn2_endpoint_compiles_for_trn2_and_the_default_for_inf2():
    assert load_config().compile_target == "inf2"
    assert load_config(overrides=[*TRN2, "serving.tensor_parallel_size=4"]).compile_target == "trn2"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["infra.endpoint.instance_type=ml.trn2.48xlarge"],
            "infra.endpoint.instance_type=ml.trn2.48xlarge needs an artifact compiled for trn2, but "
            "serving.instance_types lists ml.inf2.xlarge, ml.inf2.8xlarge, ml.inf2.24xlarge, ml.inf2.48xlarge, which "
            "need one compiled for inf2: the compile step exports for one family",
        ),
        (
            ["serving.instance_types=[ml.inf2.48xlarge,ml.trn2.48xlarge]"],
            "mixes inf2 and trn2 types, but one compiled artifact runs on one of them only",
        ),
        (
            ["infra.endpoint.instance_type=ml.trn1.32xlarge"],
            "'ml.trn1.32xlarge': the project serves a Neuron export on Inferentia 2 (ml.inf2.*) or Trainium 2 "
            "(ml.trn2.48xlarge) only",
        ),
    ],
)
def test_a_config_serving_the_wrong_family_is_refused_saying_what_to_do(overrides, message):
    with pytest.raises(ConfigError) as info:
        load_config(overrides=overrides)
    assert message in str(info.value)
