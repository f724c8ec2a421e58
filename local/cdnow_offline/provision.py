"""Create the stack of template.yaml in the emulator, resource by resource, in dependency order.

moto's CloudFormation ignores the SAM transform and AWS::Glue::Job and creates state machines in
its non-executing backend, so this small provisioner plays CloudFormation for the resource types
the template uses. A type it does not know is an error: a template change must be seen here.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from .glue_runner import LocalGlueRunner
from .identities import Identities
from .lambda_runner import LocalFunction, LocalLambdaRunner
from .moto_defects import EventBridgeDropsStepFunctionsTargets, iam_refuses_a_policy_without_version
from .template import (
    ACCOUNT_ID, Intrinsics, LocalArtifacts, creation_order, image_code_paths, image_requirements, load_template,
    translate_sam,
)

# Types that change nothing a local run can observe: moto has no alarm evaluation (and no metrics
# offline: Powertools metrics are switched off), and nothing invokes a function through a permission.
# Everything else, IAM included, is created in the emulator as on AWS (and IAM enforced: identities.py).
_NOT_EMULATED = {"AWS::Lambda::Permission"}


def _placeholder_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README", "offline: the code runs from the checkout (local/lambda_runner.py)")
    return buffer.getvalue()


@dataclass
class Stack:
    name: str
    region: str
    outputs: dict[str, str] = field(default_factory=dict)
    physical_ids: dict[str, str] = field(default_factory=dict)
    relays: list[EventBridgeDropsStepFunctionsTargets] = field(default_factory=list)

    @property
    def execution_relay(self) -> EventBridgeDropsStepFunctionsTargets:
        """The relay that starts the pipeline's executions (the raw bucket's rule)."""
        return next(relay for relay in self.relays if relay.state_machine_arn)


class Provisioner:
    def __init__(self, root: Path, region: str, lambdas: LocalLambdaRunner, glue_jobs: LocalGlueRunner,
                 identities: Identities):
        self.root = root
        self.identities = identities
        self.region = region
        self.lambdas = lambdas
        self.glue_jobs = glue_jobs
        self._layer_dirs: dict[str, Path] = {}
        self._clients: dict[str, Any] = {}

    def _client(self, service: str):
        """One client per service for the whole stack (creating one costs more than most calls)."""
        if service not in self._clients:
            self._clients[service] = boto3.client(service)
        return self._clients[service]

    def provision(self, stack_name: str, parameters: dict[str, str] | None = None) -> Stack:
        template = load_template(self.root / "template.yaml")
        values = {
            name: str(spec["Default"])
            for name, spec in template.get("Parameters", {}).items()
            if "Default" in spec
        }
        values.update(parameters or {})
        cfn, artifacts = translate_sam(template, self.root, values, self.region)
        intrinsics = Intrinsics(self.region, stack_name, values, cfn.get("Conditions", {}))
        stack = Stack(stack_name, self.region)
        resources = cfn["Resources"]
        for logical_id in creation_order(resources):
            resource = resources[logical_id]
            if "Condition" in resource and not intrinsics.condition(resource["Condition"]):
                continue
            kind = resource["Type"]
            if kind in _NOT_EMULATED:
                continue
            create = _CREATORS.get(kind)
            if create is None:
                raise NotImplementedError(f"offline provisioner cannot create {kind} ({logical_id})")
            props = intrinsics.resolve(resource.get("Properties", {}))
            name = f"{stack_name}-{logical_id}"
            ref, attributes = create(self, stack, name, props, resource, artifacts)
            intrinsics.refs[logical_id] = ref
            stack.physical_ids[logical_id] = ref
            for attribute, value in attributes.items():
                intrinsics.attributes[(logical_id, attribute)] = value
        stack.outputs = {k: str(intrinsics.resolve(v["Value"])) for k, v in cfn.get("Outputs", {}).items()}
        return stack

    # One creator per resource type: (name, resolved properties, ...) -> (Ref value, attributes).

    def _bucket(self, stack, name, props, resource, artifacts):
        s3 = self._client("s3")
        bucket = name.lower()
        s3.create_bucket(Bucket=bucket)
        if "BucketEncryption" in props:
            rules = [
                {"ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"],
                 **({"BucketKeyEnabled": rule["BucketKeyEnabled"]} if "BucketKeyEnabled" in rule else {})}
                for rule in props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
            ]
            s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": rules})
        if "PublicAccessBlockConfiguration" in props:
            s3.put_public_access_block(
                Bucket=bucket, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"]
            )
        if "OwnershipControls" in props:
            s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls=props["OwnershipControls"])
        if "VersioningConfiguration" in props:
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration=props["VersioningConfiguration"])
        if "LifecycleConfiguration" in props:
            rules = [_lifecycle_rule(rule) for rule in props["LifecycleConfiguration"]["Rules"]]
            s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
        if props.get("NotificationConfiguration", {}).get("EventBridgeConfiguration", {}).get("EventBridgeEnabled"):
            s3.put_bucket_notification_configuration(
                Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
            )
        return bucket, {"Arn": f"arn:aws:s3:::{bucket}", "DomainName": f"{bucket}.s3.amazonaws.com"}

    def _bucket_policy(self, stack, name, props, resource, artifacts):
        self._client("s3").put_bucket_policy(Bucket=props["Bucket"], Policy=json.dumps(props["PolicyDocument"]))
        return props["Bucket"], {}

    def _kms_key(self, stack, name, props, resource, artifacts):
        kms = self._client("kms")
        key = kms.create_key(
            Description=props.get("Description", ""), Policy=json.dumps(props["KeyPolicy"])
        )["KeyMetadata"]
        if props.get("EnableKeyRotation"):
            kms.enable_key_rotation(KeyId=key["KeyId"])
        return key["KeyId"], {"Arn": key["Arn"], "KeyId": key["KeyId"]}

    def _log_group(self, stack, name, props, resource, artifacts):
        logs = self._client("logs")
        group = props.get("LogGroupName", name)
        logs.create_log_group(logGroupName=group)
        if "RetentionInDays" in props:
            logs.put_retention_policy(logGroupName=group, retentionInDays=int(props["RetentionInDays"]))
        return group, {"Arn": f"arn:aws:logs:{self.region}:{ACCOUNT_ID}:log-group:{group}:*"}

    def _managed_policy(self, stack, name, props, resource, artifacts):
        policy = self._client("iam").create_policy(
            PolicyName=name[:128], PolicyDocument=json.dumps(props["PolicyDocument"]),
            Description=props.get("Description", ""),
        )["Policy"]
        return policy["Arn"], {"PolicyArn": policy["Arn"]}

    def _athena_workgroup(self, stack, name, props, resource, artifacts):
        # RecursiveDeleteOption and State are CloudFormation's (deletion, enablement), not the API's.
        configuration = props.get("WorkGroupConfiguration", {})
        self._client("athena").create_work_group(
            Name=props["Name"], Description=props.get("Description", ""), Configuration=configuration,
        )
        return props["Name"], {}

    def _glue_database(self, stack, name, props, resource, artifacts):
        database = props["DatabaseInput"]["Name"]
        self._client("glue").create_database(DatabaseInput=props["DatabaseInput"])
        return database, {}

    def _role(self, stack, name, props, resource, artifacts):
        iam = self._client("iam")
        role_name = name[:64]
        role = iam.create_role(
            RoleName=role_name, AssumeRolePolicyDocument=json.dumps(props["AssumeRolePolicyDocument"])
        )["Role"]
        for policy in props.get("Policies", []):
            document = iam_refuses_a_policy_without_version(policy["PolicyDocument"])
            iam.put_role_policy(RoleName=role_name, PolicyName=policy["PolicyName"],
                                PolicyDocument=json.dumps(document))
        for policy_arn in props.get("ManagedPolicyArns", []):
            iam.attach_role_policy(RoleName=role_name, PolicyArn=policy_arn)
        return role_name, {"Arn": role["Arn"], "RoleId": role["RoleId"]}

    def _glue_job(self, stack, name, props, resource, artifacts):
        glue = self._client("glue")
        script = props["Command"]["ScriptLocation"]
        keys = ["Description", "Role", "Command", "DefaultArguments", "GlueVersion", "WorkerType",
                "NumberOfWorkers", "Timeout", "ExecutionProperty", "MaxRetries"]
        glue.create_job(Name=name, **{k: props[k] for k in keys if k in props})
        self.glue_jobs.register(name, self.root / script)
        return name, {}

    def _layer(self, stack, name, props, resource, artifacts):
        layer = self._client("lambda").publish_layer_version(
            LayerName=props.get("LayerName", name), Content={"ZipFile": _placeholder_zip()},
            CompatibleRuntimes=props.get("CompatibleRuntimes", []),
        )
        self._layer_dirs[layer["LayerVersionArn"]] = artifacts.code_dirs[props["Content"]["S3Key"]]
        return layer["LayerVersionArn"], {}

    def _function(self, stack, name, props, resource, artifacts):
        spec: dict[str, Any] = {
            "FunctionName": name,
            "Role": props["Role"],
            "Timeout": int(props.get("Timeout", 3)),
            "MemorySize": int(props.get("MemorySize", 128)),
            "Environment": {"Variables": {k: str(v) for k, v in props.get("Environment", {}).get("Variables", {}).items()}},
            **{key: props[key] for key in ("TracingConfig", "LoggingConfig") if key in props},
        }
        if props.get("PackageType") == "Image":
            image_uri = props["Code"]["ImageUri"]
            code_dir = artifacts.code_dirs[image_uri]
            handler = props["ImageConfig"]["Command"][0]
            layer_dirs = [p for p in image_code_paths(resource, self.root) if p != code_dir]
            requirements = [image_requirements(resource, self.root)]
            spec.update(PackageType="Image", Code={"ImageUri": image_uri})
        else:
            code_dir = artifacts.code_dirs[props["Code"]["S3Key"]]
            handler = props["Handler"]
            # Layers published by this stack run from the checkout. What a layer from outside the
            # template holds is unknown here: in-process it is the dev venv's packages, and a
            # shipped environment cannot be made for it.
            local_layers = [arn for arn in props.get("Layers", []) if arn in self._layer_dirs]
            foreign = sorted(set(props.get("Layers", [])) - set(local_layers))
            if foreign and self.lambdas.shipped:
                raise ValueError(f"{name} uses layers from outside the template, which cannot be "
                                 f"shipped offline: {foreign}")
            layer_dirs = [self._layer_dirs[arn] for arn in local_layers]
            # What `sam build` installs: the function's own requirements.txt, then each layer's.
            requirements = [[folder / "requirements.txt"] for folder in [code_dir, *layer_dirs]
                            if (folder / "requirements.txt").is_file()]
            spec.update(Runtime=props["Runtime"], Handler=handler, Code={"ZipFile": _placeholder_zip()},
                        Layers=local_layers)
        function = self._client("lambda").create_function(**spec)
        self.lambdas.register(LocalFunction(
            name=name, code_dir=code_dir, handler=handler, layer_dirs=layer_dirs,
            memory_mb=spec["MemorySize"], timeout_s=spec["Timeout"], requirements=requirements,
        ))
        return name, {"Arn": function["FunctionArn"]}

    def _dynamodb_table(self, stack, name, props, resource, artifacts):
        dynamodb = self._client("dynamodb")
        table = props.get("TableName", name)
        spec = {key: props[key] for key in ("AttributeDefinitions", "KeySchema", "BillingMode",
                                            "ProvisionedThroughput", "GlobalSecondaryIndexes") if key in props}
        description = dynamodb.create_table(TableName=table, **spec)["TableDescription"]
        if "TimeToLiveSpecification" in props:
            dynamodb.update_time_to_live(TableName=table, TimeToLiveSpecification=props["TimeToLiveSpecification"])
        if "PointInTimeRecoverySpecification" in props:
            dynamodb.update_continuous_backups(
                TableName=table, PointInTimeRecoverySpecification=props["PointInTimeRecoverySpecification"])
        return table, {"Arn": description["TableArn"]}

    def _alarm(self, stack, name, props, resource, artifacts):
        # CloudWatch computes no metrics offline: the alarm exists with its actions, and
        # moto_defects.cloudwatch_runs_no_alarm_actions publishes when its state is set to ALARM.
        keys = ["AlarmDescription", "Namespace", "MetricName", "Dimensions", "Statistic", "Period",
                "EvaluationPeriods", "Threshold", "ComparisonOperator", "TreatMissingData", "AlarmActions", "Metrics"]
        spec = {key: props[key] for key in keys if key in props}
        for key in ("Period", "EvaluationPeriods"):
            if key in spec:
                spec[key] = int(spec[key])
        if "Threshold" in spec:
            spec["Threshold"] = float(spec["Threshold"])
        for metric in spec.get("Metrics", []):
            if "MetricStat" in metric:
                metric["MetricStat"]["Period"] = int(metric["MetricStat"]["Period"])
        self._client("cloudwatch").put_metric_alarm(AlarmName=name, **spec)
        return name, {"Arn": f"arn:aws:cloudwatch:{self.region}:{ACCOUNT_ID}:alarm:{name}"}

    def _topic(self, stack, name, props, resource, artifacts):
        attributes = {key: str(props[key]) for key in ("DisplayName", "KmsMasterKeyId") if key in props}
        arn = self._client("sns").create_topic(Name=name, Attributes=attributes)["TopicArn"]
        return arn, {"TopicName": name, "TopicArn": arn}

    def _subscription(self, stack, name, props, resource, artifacts):
        arn = self._client("sns").subscribe(
            TopicArn=props["TopicArn"], Protocol=props["Protocol"], Endpoint=props["Endpoint"]
        )["SubscriptionArn"]
        return arn, {}

    def _state_machine(self, stack, name, props, resource, artifacts):
        definition = props["DefinitionString"]
        for key, value in props.get("DefinitionSubstitutions", {}).items():
            definition = definition.replace("${" + key + "}", str(value))
        leftover = re.findall(r"\$\{[A-Za-z0-9_]+\}", definition)
        if leftover:
            raise ValueError(f"state machine {name}: no substitution for {sorted(set(leftover))}")
        options = {}
        if "LoggingConfiguration" in props:
            options["loggingConfiguration"] = _lower_camel(props["LoggingConfiguration"])
        if "TracingConfiguration" in props:
            options["tracingConfiguration"] = _lower_camel(props["TracingConfiguration"])
        machine = self._client("stepfunctions").create_state_machine(
            name=name, definition=definition, roleArn=props["RoleArn"], **options
        )
        return machine["stateMachineArn"], {"Name": name}

    def _rule(self, stack, name, props, resource, artifacts):
        events = self._client("events")
        rule_arn = events.put_rule(
            Name=name, EventPattern=json.dumps(props["EventPattern"]), State=props.get("State", "ENABLED")
        )["RuleArn"]
        targets = []
        for target in props.get("Targets", []):
            if target["Arn"].startswith(("arn:aws:states:", "arn:aws:lambda:")):
                kind = "sfn" if target["Arn"].startswith("arn:aws:states:") else "lambda"
                relay = EventBridgeDropsStepFunctionsTargets(
                    target["Arn"], queue_name=f"{name}-{kind}-relay"[-80:], role_arn=target.get("RoleArn"),
                    acting_as=self.identities.acting_as,
                )
                stack.relays.append(relay)
                targets.append({"Id": target["Id"], "Arn": relay.queue_arn})
            else:
                targets.append(target)
        if targets:
            events.put_targets(Rule=name, Targets=targets)
        return name, {"Arn": rule_arn}


def _lifecycle_rule(rule: dict) -> dict:
    """A CloudFormation lifecycle rule as the S3 API spells it (ID, and a Filter for the whole bucket)."""
    api_rule = {k: v for k, v in rule.items() if k not in ("Id", "Prefix")}
    if "Id" in rule:
        api_rule["ID"] = rule["Id"]
    api_rule.setdefault("Filter", {"Prefix": rule.get("Prefix", "")})
    return api_rule


def _lower_camel(value: Any) -> Any:
    """CloudFormation's Step Functions properties (Level, Destinations) as the API's (level, destinations)."""
    if isinstance(value, list):
        return [_lower_camel(v) for v in value]
    if isinstance(value, dict):
        return {k[:1].lower() + k[1:]: _lower_camel(v) for k, v in value.items()}
    return value


_CREATORS = {
    "AWS::S3::Bucket": Provisioner._bucket,
    "AWS::S3::BucketPolicy": Provisioner._bucket_policy,
    "AWS::KMS::Key": Provisioner._kms_key,
    "AWS::Logs::LogGroup": Provisioner._log_group,
    "AWS::IAM::ManagedPolicy": Provisioner._managed_policy,
    "AWS::Athena::WorkGroup": Provisioner._athena_workgroup,
    "AWS::Glue::Database": Provisioner._glue_database,
    "AWS::IAM::Role": Provisioner._role,
    "AWS::Glue::Job": Provisioner._glue_job,
    "AWS::Lambda::LayerVersion": Provisioner._layer,
    "AWS::Lambda::Function": Provisioner._function,
    "AWS::DynamoDB::Table": Provisioner._dynamodb_table,
    "AWS::SNS::Topic": Provisioner._topic,
    "AWS::CloudWatch::Alarm": Provisioner._alarm,
    "AWS::SNS::Subscription": Provisioner._subscription,
    "AWS::StepFunctions::StateMachine": Provisioner._state_machine,
    "AWS::Events::Rule": Provisioner._rule,
}
