"""Least privilege, checked on the template as CloudFormation receives it (after the SAM transform,
so policy templates and SAM's own roles are expanded): no Allow statement grants a wildcard action
or resource unless it is on the allow-list below, with the reason AWS leaves nothing narrower.

A resource is scoped when it names a resource, or everything under one (a trailing `/*` or `:*`,
as in `<bucket ARN>/runs/*`); `*` anywhere else, or alone, is a wildcard. AWS managed policies
attached by ARN are checked through their documents (moto ships AWS's managed policies).
Deny statements grant nothing and are not checked.
"""

from __future__ import annotations

import json
import re

import pytest

from cdnow_offline.template import load_template, translate_sam

# (why AWS allows nothing narrower, actions, resource): the only wildcards the stack may grant.
ALLOWED_WILDCARDS = [
    ("X-Ray has no resource-level permissions: AWSXrayWriteOnlyAccess, attached to every function "
     "role and (by SAM, for Tracing) to the state machine role",
     {"xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules",
      "xray:GetSamplingTargets", "xray:GetSamplingStatisticSummaries"}, "*"),
    ("Step Functions log delivery to CloudWatch Logs: AWS documents these actions on * only",
     {"logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
      "logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies",
      "logs:DescribeLogGroups"}, "*"),
    ("A KMS key policy's Resource is always * (it means the key itself); the account statement is "
     "KMS's default, which hands the key's use to IAM policies so the key stays manageable",
     {"kms:*", "kms:Decrypt", "kms:GenerateDataKey"}, "*"),
    ("sam deploy uploads the Glue script to SAM's managed artifact bucket, whose name ends in a "
     "random suffix; read-only, under the stack's own prefix",
     {"s3:GetObject"}, "arn:${AWS::Partition}:s3:::aws-sam-cli-managed-default-samclisourcebucket-*/${AWS::StackName}/*"),
]


def _render(value) -> list[str]:
    """A resource or action as text, intrinsics spelled out: `${X}` stays `${X}`, a Ref or GetAtt
    becomes a name (no wildcard can hide in them), and Fn::If gives both branches."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [text for item in value for text in _render(item)]
    if isinstance(value, dict) and len(value) == 1:
        (key, arg), = value.items()
        if key == "Ref":
            return [f"${{{arg}}}"]
        if key == "Fn::GetAtt":
            return [f"${{{'.'.join(arg) if isinstance(arg, list) else arg}}}"]
        if key == "Fn::Sub":
            if isinstance(arg, str):
                return [arg]
            text, variables = arg
            for name, variable in variables.items():
                text = text.replace(f"${{{name}}}", _render(variable)[0])
            return [text]
        if key == "Fn::If":
            return [text for branch in arg[1:] for text in _render(branch)]
    raise AssertionError(f"cannot read this IAM value: {value!r}")


def _statements(document) -> list[dict]:
    statements = document["Statement"]
    statements = statements if isinstance(statements, list) else [statements]
    found = []
    for statement in statements:
        if isinstance(statement, dict) and set(statement) == {"Fn::If"}:
            found += [s for s in statement["Fn::If"][1:] if s != {"Ref": "AWS::NoValue"}]
        else:
            found.append(statement)
    return found


def policy_documents(cfn: dict, managed_policies: dict[str, dict]) -> list[tuple[str, dict]]:
    """(where, document) for every IAM and resource policy of the template."""
    documents = []
    for logical_id, resource in cfn["Resources"].items():
        props, kind = resource.get("Properties", {}), resource["Type"]
        if kind == "AWS::IAM::Role":
            documents += [(f"{logical_id}/{p['PolicyName']}", p["PolicyDocument"]) for p in props.get("Policies", [])]
            for arn in _render(props.get("ManagedPolicyArns", [])):
                name = arn.rsplit("/", 1)[-1]
                if arn.startswith("${"):
                    continue  # a customer managed policy of this template: checked as its own resource
                assert arn.startswith(("arn:aws:iam::aws:policy/", "arn:${AWS::Partition}:iam::aws:policy/")), arn
                assert name in managed_policies, f"{logical_id}: unknown AWS managed policy {arn}"
                documents.append((f"{logical_id}/{name} (AWS managed)", managed_policies[name]["Document"]))
        elif kind in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy", "AWS::S3::BucketPolicy", "AWS::SNS::TopicPolicy"):
            documents.append((logical_id, props["PolicyDocument"]))
        elif kind == "AWS::KMS::Key":
            documents.append((logical_id, props["KeyPolicy"]))
    return documents


def is_wildcard_resource(resource: str) -> bool:
    if resource == "*":
        return True
    scoped = re.sub(r"[/:]\*$", "", resource)
    return "*" in scoped


def wildcard_grants(documents: list[tuple[str, dict]]) -> list[tuple[str, str, str]]:
    """(where, action, resource) for each wildcard an Allow statement grants."""
    found = []
    for where, document in documents:
        for statement in _statements(document):
            if statement["Effect"] != "Allow":
                continue
            assert "NotAction" not in statement and "NotResource" not in statement, where
            actions = _render(statement["Action"])
            resources = _render(statement.get("Resource", "*"))
            for action in actions:
                for resource in resources:
                    if "*" in action or is_wildcard_resource(resource):
                        found.append((where, action, resource))
    return found


def allowed(action: str, resource: str) -> bool:
    return any(action in actions and resource == allowed_resource
               for _, actions, allowed_resource in ALLOWED_WILDCARDS)


@pytest.fixture(scope="module")
def managed_policies() -> dict[str, dict]:
    from moto.iam.aws_managed_policies import aws_managed_policies_data

    return json.loads(aws_managed_policies_data)


@pytest.fixture(scope="module")
def grants(root, managed_policies):
    template = load_template(root / "template.yaml")
    parameters = {k: str(v["Default"]) for k, v in template["Parameters"].items() if "Default" in v}
    cfn, _ = translate_sam(template, root, parameters, "us-east-1")
    return wildcard_grants(policy_documents(cfn, managed_policies))


def test_no_wildcard_outside_the_allow_list(grants):
    unexpected = [grant for grant in grants if not allowed(grant[1], grant[2])]
    assert not unexpected, "wildcards not on the allow-list:\n" + "\n".join(map(str, unexpected))


def test_every_allow_list_entry_is_still_needed(grants):
    for reason, actions, resource in ALLOWED_WILDCARDS:
        used = {action for _, action, granted in grants if granted == resource and action in actions}
        assert used == actions, f"allow-list entry no longer needed in full ({reason}): {actions - used}"


def test_the_check_catches_wildcards_and_passes_scoped_resources():
    documents = [("Role/p", {"Statement": [
        {"Effect": "Allow", "Action": "s3:*", "Resource": {"Fn::Sub": "${Bucket.Arn}/runs/*"}},
        {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*"},
        {"Effect": "Allow", "Action": ["lambda:InvokeFunction"],
         "Resource": {"Fn::Sub": ["arn:aws:lambda:r:a:function:${name}*", {"name": {"Ref": "Fn"}}]}},
        {"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": {"Fn::Sub": "${Bucket.Arn}/tables/*"}},
        {"Effect": "Allow", "Action": ["glue:GetTable"], "Resource": "arn:aws:glue:r:a:table/db/*"},
        {"Effect": "Deny", "Action": "s3:*", "Resource": "*"},
        {"Fn::If": ["Cond", {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*"}, {"Ref": "AWS::NoValue"}]},
    ]})]
    assert wildcard_grants(documents) == [
        ("Role/p", "s3:*", "${Bucket.Arn}/runs/*"),
        ("Role/p", "s3:GetObject", "*"),
        ("Role/p", "lambda:InvokeFunction", "arn:aws:lambda:r:a:function:${Fn}*"),
        ("Role/p", "kms:Decrypt", "*"),
    ]


def test_sam_function_roles_do_not_bring_the_basic_execution_role(root):
    """SAM attaches AWSLambdaBasicExecutionRole (logs on "*") to every role it makes for a function;
    the functions have their own roles, each writing only to its own log group."""
    template = load_template(root / "template.yaml")
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            assert "Role" in resource["Properties"] and "Policies" not in resource["Properties"], logical_id


def test_every_bucket_listing_is_scoped_to_prefixes(root, managed_policies):
    """A role may list a bucket only under the prefixes it works in (issue 20, case 13: the
    Transform role listed both buckets whole). moto does not evaluate conditions: this checks them."""
    template = load_template(root / "template.yaml")
    parameters = {k: str(v["Default"]) for k, v in template["Parameters"].items() if "Default" in v}
    cfn, _ = translate_sam(template, root, parameters, "us-east-1")
    unscoped = []
    for where, document in policy_documents(cfn, managed_policies):
        for statement in _statements(document):
            if statement["Effect"] == "Allow" and "s3:ListBucket" in _render(statement["Action"]):
                prefixes = (statement.get("Condition") or {}).get("StringLike", {}).get("s3:prefix")
                if not prefixes or any(prefix in ("*", "") for prefix in _render(prefixes)):
                    unscoped.append(where)
    assert not unscoped, f"ListBucket without a prefix condition: {unscoped}"
