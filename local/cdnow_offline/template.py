"""Read template.yaml the way CloudFormation does: SAM transform, parameters, conditions, intrinsics.

The offline stack creates its resources from this reading of the one template that `sam deploy`
uses, never from a second list. SAM resources are expanded by the same translator that runs in
the CloudFormation transform (samtranslator); local paths (CodeUri, ContentUri, DefinitionUri)
are swapped for placeholders first, as `sam package` swaps them for S3 locations, and mapped back
to the checkout afterwards.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ACCOUNT_ID = "123456789012"
PLACEHOLDER_BUCKET = "offline-artifacts"


class _CfnLoader(yaml.SafeLoader):
    """YAML loader that turns CloudFormation short tags (!Ref, !Sub, ...) into their long form."""


def _construct_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{tag_suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path) -> dict:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_CfnLoader)  # noqa: S506 (safe loader subclass)


@dataclass
class LocalArtifacts:
    """Where code lives in the checkout: keyed by the placeholder S3 key or image URI that stands
    for it in the translated template (the translator renames some logical ids, e.g. layers)."""

    code_dirs: dict[str, Path] = field(default_factory=dict)


def translate_sam(
    template: dict, root: Path, parameters: dict[str, str], region: str
) -> tuple[dict, LocalArtifacts]:
    """Expand the SAM transform; return the plain CloudFormation template and the local code map."""
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    sam = copy.deepcopy(template)
    artifacts = LocalArtifacts()
    for logical_id, resource in sam.get("Resources", {}).items():
        props = resource.get("Properties", {})
        kind = resource["Type"]
        if kind == "AWS::Serverless::Function" and props.get("PackageType") == "Image":
            # An image is built from its Dockerfile; offline its code is the folder it copies the
            # handler from.
            image_uri = f"{ACCOUNT_ID}.dkr.ecr.{region}.amazonaws.com/offline:{logical_id.lower()}"
            artifacts.code_dirs[image_uri] = image_handler_dir(resource, root)
            props["ImageUri"] = image_uri
        elif kind == "AWS::Serverless::Function" and isinstance(props.get("CodeUri"), str):
            artifacts.code_dirs[f"{logical_id}.zip"] = root / props["CodeUri"]
            props["CodeUri"] = f"s3://{PLACEHOLDER_BUCKET}/{logical_id}.zip"
        elif kind == "AWS::Serverless::LayerVersion" and isinstance(props.get("ContentUri"), str):
            artifacts.code_dirs[f"{logical_id}.zip"] = root / props["ContentUri"]
            props["ContentUri"] = f"s3://{PLACEHOLDER_BUCKET}/{logical_id}.zip"
        elif kind == "AWS::Serverless::StateMachine" and isinstance(props.get("DefinitionUri"), str):
            definition_path = root / props.pop("DefinitionUri")
            props["Definition"] = json.loads(definition_path.read_text(encoding="utf-8"))
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=region))
    # The template names managed policies by ARN, so the translator never needs IAM's name map.
    cfn = translator.translate(sam, parameter_values=dict(parameters), get_managed_policy_map=dict)
    return cfn, artifacts


def image_code_paths(resource: dict, root: Path) -> list[Path]:
    """Folders to put on sys.path for an image function: the parents of what its Dockerfile copies
    into the task root (the function's handler, the shared package), build args substituted."""
    metadata = resource["Metadata"]
    context = root / metadata.get("DockerContext", ".")
    build_args = {name: str(value) for name, value in metadata.get("DockerBuildArgs", {}).items()}
    paths: list[Path] = []
    for line in (context / metadata["Dockerfile"]).read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].upper() == "COPY" and "LAMBDA_TASK_ROOT" in parts[-1]:
            for source in parts[1:-1]:
                source = re.sub(r"\$\{(\w+)\}", lambda m: build_args[m.group(1)], source)
                parent = (context / source).parent
                if parent not in paths:
                    paths.append(parent)
    return paths


def image_requirements(resource: dict, root: Path) -> list[Path]:
    """The requirement files an image function's Dockerfile installs (its `pip install -r`
    arguments, traced back through the COPY that put them in the image), build args substituted."""
    metadata = resource["Metadata"]
    context = root / metadata.get("DockerContext", ".")
    build_args = {name: str(value) for name, value in metadata.get("DockerBuildArgs", {}).items()}

    def substitute(text: str) -> str:
        return re.sub(r"\$\{(\w+)\}", lambda m: build_args[m.group(1)], text)

    copied: dict[str, Path] = {}  # a path inside the image -> the file of the context
    requirements: list[Path] = []
    for line in (context / metadata["Dockerfile"]).read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].upper() == "COPY" and "LAMBDA_TASK_ROOT" not in parts[-1]:
            destination = parts[-1]
            for source in parts[1:-1]:
                inside = destination + Path(source).name if destination.endswith("/") else destination
                copied[inside] = context / source
        elif parts[:1] == ["RUN"] and "pip" in parts and "install" in parts:
            for option, value in zip(parts, parts[1:]):
                if option == "-r":
                    inside = substitute(value)
                    if inside not in copied:
                        raise ValueError(f"{metadata['Dockerfile']}: {inside} is installed but never copied in")
                    requirements.append(copied[inside])
    return requirements


def image_handler_dir(resource: dict, root: Path) -> Path:
    """The folder of an image function's handler module (its ImageConfig command)."""
    module = resource["Properties"]["ImageConfig"]["Command"][0].rpartition(".")[0]
    found = [p for p in image_code_paths(resource, root) if (p / f"{module.replace('.', '/')}.py").is_file()]
    if len(found) != 1:
        raise ValueError(f"the Dockerfile copies {module}.py from {len(found)} folders, not one: {found}")
    return found[0]


PSEUDO_PARAMETERS = {
    "AWS::AccountId": ACCOUNT_ID,
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::NoValue": None,
}


class Intrinsics:
    """Evaluates Ref, Fn::GetAtt, Fn::Sub, Fn::Join, Fn::If and friends against known values.

    `refs` maps a logical id or parameter to what Ref returns; `attributes` maps (id, attribute)
    to what GetAtt returns. Both fill up as resources are created, in dependency order.
    """

    def __init__(self, region: str, stack_name: str, parameters: dict[str, str], conditions: dict):
        self.refs: dict[str, Any] = {
            **PSEUDO_PARAMETERS,
            "AWS::Region": region,
            "AWS::StackName": stack_name,
            **parameters,
        }
        self.attributes: dict[tuple[str, str], Any] = {}
        self._condition_defs = conditions
        self._conditions: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = bool(self.resolve(self._condition_defs[name]))
        return self._conditions[name]

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in (self.resolve(v) for v in value) if v is not None]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            handler = _FUNCTIONS.get(key)
            if handler is not None:
                return handler(self, arg)
        return {k: r for k, r in ((k, self.resolve(v)) for k, v in value.items()) if r is not None}

    def _ref(self, name: str) -> Any:
        if name not in self.refs:
            raise KeyError(f"Ref to {name!r}, which is not created yet or not in the template")
        return self.refs[name]

    def _get_att(self, arg: Any) -> Any:
        logical_id, attribute = self.resolve(arg) if isinstance(arg, dict) else arg
        key = (logical_id, attribute)
        if key not in self.attributes:
            raise KeyError(f"GetAtt {logical_id}.{attribute} is not known offline")
        return self.attributes[key]

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))

        def substitute(match: re.Match) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name:
                return str(self._get_att(name.split(".", 1)))
            return str(self._ref(name))

        return re.sub(r"\$\{([^}]+)\}", substitute, text)

    def _join(self, arg: list) -> str:
        delimiter, items = arg
        return delimiter.join(str(v) for v in self.resolve(items))

    def _if(self, arg: list) -> Any:
        name, when_true, when_false = arg
        return self.resolve(when_true if self.condition(name) else when_false)

    def _select(self, arg: list) -> Any:
        index, items = self.resolve(arg)
        return items[int(index)]


_FUNCTIONS = {
    "Ref": lambda self, arg: self._ref(arg),
    "Fn::GetAtt": lambda self, arg: self._get_att(arg),
    "Fn::Sub": lambda self, arg: self._sub(arg),
    "Fn::Join": lambda self, arg: self._join(arg),
    "Fn::If": lambda self, arg: self._if(arg),
    "Fn::Select": lambda self, arg: self._select(arg),
    "Fn::Split": lambda self, arg: self.resolve(arg[1]).split(arg[0]),
    "Fn::Equals": lambda self, arg: self.resolve(arg[0]) == self.resolve(arg[1]),
    "Fn::Not": lambda self, arg: not self.resolve(arg[0]),
    "Fn::And": lambda self, arg: all(self.resolve(a) for a in arg),
    "Fn::Or": lambda self, arg: any(self.resolve(a) for a in arg),
    "Condition": lambda self, arg: self.condition(arg),
}


def references(value: Any) -> set[str]:
    """Logical ids a property value depends on (Ref, GetAtt, ${...} in Sub)."""
    found: set[str] = set()
    if isinstance(value, list):
        for v in value:
            found |= references(v)
    elif isinstance(value, dict):
        for key, arg in value.items():
            if key == "Ref" and isinstance(arg, str):
                found.add(arg)
            elif key == "Fn::GetAtt":
                found.add(arg[0] if isinstance(arg, list) else arg.split(".")[0])
            elif key == "Fn::Sub":
                text = arg if isinstance(arg, str) else arg[0]
                found |= {m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text)}
                if not isinstance(arg, str):
                    found |= references(arg[1])
            else:
                found |= references(arg)
    return found


def creation_order(resources: dict) -> list[str]:
    """Logical ids in an order where every resource comes after the ones it references."""
    deps = {
        lid: (references(r.get("Properties", {})) | set(_as_list(r.get("DependsOn")))) & resources.keys()
        for lid, r in resources.items()
    }
    ordered: list[str] = []
    done: set[str] = set()

    def visit(lid: str, trail: tuple[str, ...]) -> None:
        if lid in done:
            return
        if lid in trail:
            raise ValueError(f"circular reference in template: {' -> '.join(trail + (lid,))}")
        for dep in sorted(deps[lid]):
            visit(dep, trail + (lid,))
        done.add(lid)
        ordered.append(lid)

    for lid in sorted(resources):
        visit(lid, ())
    return ordered


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]
