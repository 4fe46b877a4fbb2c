"""The CDK app (`cdk synth`, `cdk deploy --all`): reads the config once and builds the stacks.

Synth makes no AWS call and needs no Docker: account, region and AZs come from the config, the
pipeline definition is generated offline, and image assets are only staged (built at deploy).
"""

import os
from pathlib import Path

from aws_cdk import App, Environment

from config import ConfigError, ProjectConfig, load_config
from infra.deploy.settings import EndpointSettings
from infra.foundation import retention
from infra.nag import add_security_checks
from infra.names import PlatformNames
from infra.pipeline.settings import PipelineSettings
from infra.stacks import PlatformSettings, build_platform
from pipelines.definition.builder import pipeline_definition
from pipelines.definition.placeholders import source_commit
from training.errors import UserError

ROOT = Path(__file__).resolve().parent

# CDK's built-in CloudFormation template validation runs at every synth unless the App is built with
# builtinCloudFormationValidation=false, and reports its errors as warnings unless this context flag is
# set (aws-cdk-lib 2.275.0: core/lib/app.d.ts `builtinCloudFormationValidation`, "@default true";
# core/lib/private/synthesis-validation.js `defaultValidationEnabled`, `downgradeCfnValidateErrorsToWarnings`;
# cx-api/lib/features.js VALIDATE_AGAINST_DEFAULT_RULES). The plugin took 6.7 of the 7.6 s that CDK's
# synth() spent in Node, 5.6 s of it starting its rule engine (a WASM module), measured with
# `node --cpu-prof` on this app. The flag goes in postCliContext, which App applies after cdk.json and
# `cdk synth -c` context (core/lib/app.js `loadContext`), so neither can turn the errors back into
# warnings. CDK's own switches still stop the plugin altogether: `cdk synth --no-validation` and
# CDK_VALIDATION=false (`defaultValidationEnabled`).
STRICT_TEMPLATE_VALIDATION = {"@aws-cdk/core:validateAgainstDefaultRules": True}


def build_app(cfg: ProjectConfig, outdir: str | None = None) -> App:
    # infra.validate_templates: on, its errors fail synth; off (the default), it does not run. The tests
    # synthesize the default config with it on (tests/test_infra.py).
    validate = cfg.infra.validate_templates
    app = App(
        outdir=outdir,
        builtin_cloud_formation_validation=validate,
        post_cli_context=STRICT_TEMPLATE_VALIDATION if validate else None,
    )
    e = cfg.infra.endpoint
    settings = PlatformSettings(
        name=cfg.project.name,
        names=PlatformNames.from_config(cfg),
        env=Environment(account=cfg.project.account, region=cfg.project.region),
        availability_zones=list(cfg.infra.availability_zones),
        vpc_cidr=cfg.infra.vpc_cidr,
        log_retention_days=cfg.infra.log_retention_days,
        notification_email=cfg.infra.notification_email,
        mlflow=cfg.infra.mlflow,
        mlflow_size=cfg.infra.mlflow_size,
        repo_root=ROOT,
        pipeline=PipelineSettings(
            pipeline_name=cfg.pipeline_name,
            model_package_group=cfg.model_package_group,
            definition_json=pipeline_definition(cfg),
            subnet_count=cfg.pipeline.subnet_count,
            source_commit=source_commit(ROOT),
            schedule=cfg.infra.schedule,
        ),
        endpoint=EndpointSettings(
            endpoint_name=cfg.endpoint_name,
            model_package_group=cfg.model_package_group,
            pipeline_name=cfg.pipeline_name,
            instance_type=e.instance_type,
            initial_instance_count=e.initial_instance_count,
            max_instance_count=e.max_instance_count,
            invocations_per_instance=e.invocations_per_instance,
            canary_percent=e.canary_percent,
            canary_wait_seconds=e.canary_wait_seconds,
            data_capture_percent=e.data_capture_percent,
            latency_alarm_ms=e.latency_alarm_ms,
            log_retention=retention(cfg.infra.log_retention_days),
        ),
    )
    build_platform(app, settings)
    add_security_checks(app)
    return app


def main() -> App:
    # Extra config files, as the mlops CLI takes them with --config: MLOPS_CONFIG=a.yaml:b.yaml.
    files = [Path(p) for p in os.environ.get("MLOPS_CONFIG", "").split(":") if p]
    try:
        return build_app(load_config(files))
    except (ConfigError, UserError) as exc:
        # A config the platform cannot deploy (a region without a DLC registry, a job SageMaker would
        # refuse): one line naming the key, not a traceback from inside the stack construction.
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main().synth()
