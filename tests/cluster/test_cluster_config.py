"""Offline checks of cluster.yaml and of circtune.cluster.config on crafted files.

``cluster.yaml`` goes through Ray's own preparation and schema validation
(``prepare_config`` then ``validate_config``). For the AWS provider neither
imports boto3 or calls the cloud: preparation only merges Ray's AWS
``defaults.yaml``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from circtune._cli import run_main
from circtune.cluster.__main__ import main
from circtune.cluster.config import (
    check_cluster_config,
    find_placeholders,
    find_public_binds,
    load_cluster_config,
    ray_schema_problems,
)
from circtune.errors import ConfigError

CLUSTER_FILE = Path(__file__).resolve().parents[2] / "cluster.yaml"
PLACEHOLDERS = ("REPLACE_WITH_DLAMI_ID", "REPLACE_WITH_AWS_ACCOUNT_ID", "REPLACE_WITH_YOUR_BUCKET")
FILLED = {
    "REPLACE_WITH_DLAMI_ID": "ami-0123456789abcdef0",
    "REPLACE_WITH_AWS_ACCOUNT_ID": "123456789012",
    "REPLACE_WITH_YOUR_BUCKET": "circtune-test-bucket",
}
HEAD = '["ray.head.cpu"]'
WORKER = '["ray.worker.gpu"]'

MINIMAL = {
    "cluster_name": "test",
    "max_workers": 1,
    "provider": {"type": "aws", "region": "us-west-2"},
    "auth": {"ssh_user": "ubuntu"},
    "available_node_types": {
        "head": {"resources": {}, "node_config": {"InstanceType": "m6i.large", "ImageId": "ami-0123456789abcdef0"}},
    },
    "head_node_type": "head",
}

# (command, number of problems): listeners that must be found, and safe ones that must not.
BIND_CASES = [
    ("ray start --head --dashboard-host=0.0.0.0", 1),
    ("mlflow server --host 0.0.0.0 --port 5000", 1),
    ("mlflow server --host=:: --port 5000", 1),
    ("gunicorn app:app --bind [::]:8000", 1),
    ("jupyter lab --ip=*", 1),
    ("mlflow server --host 52.12.34.56", 1),
    ("docker run -p 0.0.0.0:8080:80 image", 1),
    ("socat TCP-LISTEN:5000,fork TCP:10.0.0.5:5000", 1),
    ("socat TCP-LISTEN:5000,reuseaddr,fork TCP:127.0.0.1:5000 && uvicorn app --host 0.0.0.0", 2),
    ("mlflow server --host 127.0.0.1 --port 5000", 0),
    ("ray start --head --dashboard-host=127.0.0.1", 0),
    ("mlflow server --host 10.0.1.23", 0),
    ("socat TCP-LISTEN:5000,bind=127.0.0.1,fork TCP:$RAY_HEAD_IP:5000", 0),
    ("socat TCP-LISTEN:5000,bind=$(hostname -I | awk '{print $1}'),fork TCP:127.0.0.1:5000", 0),
    ("aws ec2 revoke-security-group-ingress --cidr 0.0.0.0/0", 0),
    ("ray start --address=$RAY_HEAD_IP:6379", 0),
]


def test_cluster_yaml_passes_ray_schema() -> None:
    config = yaml.safe_load(CLUSTER_FILE.read_text())

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)

    assert prepared["head_node_type"] == "ray.head.cpu"
    assert prepared["available_node_types"]["ray.head.cpu"]["max_workers"] == 0
    assert prepared["available_node_types"]["ray.worker.gpu"]["max_workers"] == prepared["max_workers"]


def test_cluster_yaml_settings_cost_and_security() -> None:
    config = yaml.safe_load(CLUSTER_FILE.read_text())
    worker = config["available_node_types"]["ray.worker.gpu"]
    head = config["available_node_types"]["ray.head.cpu"]
    head_commands = " ".join(config["head_start_ray_commands"])

    assert worker["node_config"]["InstanceType"].startswith("g")
    assert worker["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
    assert worker["min_workers"] == 0
    assert head["resources"]["CPU"] == 0
    assert config["idle_timeout_minutes"] > 0
    assert "--dashboard-host=127.0.0.1" in head_commands
    assert "--host 127.0.0.1" in head_commands
    assert "--serve-artifacts" in head_commands
    assert "sqlite:////home/ubuntu/mlflow/mlflow.db" in head_commands


def test_cluster_yaml_lists_every_placeholder() -> None:
    problems = check_cluster_config(CLUSTER_FILE, ray_schema=False)

    assert problems
    for problem in problems:
        assert "placeholder REPLACE_WITH_" in problem
    for placeholder in PLACEHOLDERS:
        assert any(placeholder in problem for problem in problems)
    assert any(problem.startswith(f"available_node_types{HEAD}.node_config.ImageId:") for problem in problems)
    assert any(problem.startswith(f"available_node_types{WORKER}.node_config.ImageId:") for problem in problems)


def test_cluster_yaml_filled_has_no_problems(tmp_path: Path) -> None:
    text = CLUSTER_FILE.read_text()
    for placeholder, value in FILLED.items():
        text = text.replace(placeholder, value)
    filled = tmp_path / "cluster.yaml"
    filled.write_text(text)

    assert check_cluster_config(filled) == []


def test_find_placeholders_keys_values_and_lists() -> None:
    config: dict[str, Any] = {
        **MINIMAL,
        "file_mounts": {"/home/ubuntu/REPLACE_WITH_FOLDER": "./data"},
        "setup_commands": ["pip install x", "aws s3 cp a s3://REPLACE_WITH_BUCKET/a s3://REPLACE_WITH_BUCKET/b"],
        "provider": {"type": "aws", "region": "REPLACE_WITH_REGION"},
    }

    problems = find_placeholders(config)

    assert len(problems) == 4
    assert problems[0].startswith('provider.region: the value still contains the placeholder REPLACE_WITH_REGION')
    assert problems[1].startswith('file_mounts["/home/ubuntu/REPLACE_WITH_FOLDER"]: the key still contains')
    assert problems[2].startswith("setup_commands[1]: the value still contains the placeholder REPLACE_WITH_BUCKET")
    assert problems[3].startswith("setup_commands[1]:")


def test_find_placeholders_ignores_comments(tmp_path: Path) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text("# set REPLACE_WITH_BUCKET below\n" + yaml.safe_dump(MINIMAL))

    assert find_placeholders(load_cluster_config(path)) == []


@pytest.mark.parametrize(("command", "expected"), BIND_CASES)
def test_find_public_binds_commands(command: str, expected: int) -> None:
    config = {**MINIMAL, "head_start_ray_commands": ["ray stop", command]}

    problems = find_public_binds(config)

    assert len(problems) == expected
    for problem in problems:
        assert problem.startswith("head_start_ray_commands[1]: ")


def test_find_public_binds_security_group() -> None:
    rules = [
        {"FromPort": 22, "ToPort": 22, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
        {"FromPort": 8265, "ToPort": 8265, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
        {"FromPort": -1, "ToPort": -1, "IpProtocol": "-1", "Ipv6Ranges": [{"CidrIpv6": "::/0"}]},
        {"FromPort": 5000, "ToPort": 5000, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": "203.0.113.7/32"}]},
    ]
    config = {**MINIMAL, "provider": {"type": "aws", "region": "us-west-2", "security_group": {"IpPermissions": rules}}}

    problems = find_public_binds(config)

    assert len(problems) == 2
    assert problems[0].startswith("provider.security_group.IpPermissions[1]: opens ports 8265-8265 to the internet")
    assert problems[1].startswith("provider.security_group.IpPermissions[2]: opens all ports to the internet (::/0)")


def test_ray_schema_problems_unknown_key() -> None:
    problems = ray_schema_problems({**MINIMAL, "max_worker": 3})

    assert len(problems) == 1
    assert "max_worker" in problems[0]
    assert "Ray's cluster schema rejects it" in problems[0]


def test_ray_schema_problems_missing_provider() -> None:
    config = {key: value for key, value in MINIMAL.items() if key != "provider"}

    assert ray_schema_problems(config) == ["provider: missing or without a type; set provider.type, for example aws"]


def test_ray_schema_problems_minimal_config_passes() -> None:
    assert ray_schema_problems(MINIMAL) == []


def test_load_cluster_config_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("provider: [aws\n")
    listed = tmp_path / "list.yaml"
    listed.write_text("- aws\n")

    with pytest.raises(ConfigError, match=r"missing\.yaml: cannot read the cluster file"):
        load_cluster_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=r"broken\.yaml:2:1: invalid YAML"):
        load_cluster_config(broken)
    with pytest.raises(ConfigError, match=r"list\.yaml: expected a mapping of cluster settings"):
        load_cluster_config(listed)


def test_cli_check_reports_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = {**MINIMAL, "head_start_ray_commands": ["mlflow server --host 0.0.0.0"], "cluster_name": "REPLACE_WITH_NAME"}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))

    status = run_main(main, ["check", str(path)])

    lines = capsys.readouterr().out.splitlines()
    assert status == 2
    assert len(lines) == 2
    assert lines[0].startswith(f"{path}: cluster_name: the value still contains the placeholder REPLACE_WITH_NAME")
    assert lines[1].startswith(f"{path}: head_start_ray_commands[0]: --host 0.0.0.0 listens on every network interface")


def test_cli_check_clean_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(yaml.safe_dump(MINIMAL))

    status = run_main(main, ["check", str(path)])

    assert status == 0
    assert capsys.readouterr().out == f"{path}: no problems found; start the cluster with: ray up {path}\n"


def test_cli_check_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = run_main(main, ["check", str(tmp_path / "none.yaml")])

    assert status == 2
    assert "none.yaml: cannot read the cluster file" in capsys.readouterr().err
