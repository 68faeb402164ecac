"""Offline checks of a Ray cluster-launcher configuration, run before ``ray up``.

``check_cluster_config`` reads a cluster YAML file with ``yaml.safe_load`` and
returns one line per problem, each starting with the key path of the value at
fault (``available_node_types["ray.worker.gpu"].node_config.ImageId``):

    placeholders   values or keys that still contain ``REPLACE_WITH_...``
    public binds   commands that make a server listen on every network
                   interface (``0.0.0.0``, ``::``, ``*``, socat without
                   ``bind=``) or on a public address, and security-group
                   rules that open a port other than SSH to the internet
    Ray schema     what Ray's own preparation and JSON-schema validation
                   reject (``ray.autoscaler._private.util.prepare_config``
                   and ``validate_config``), which needs no cloud access

A host given by a shell expansion (``bind=$(hostname -I)``) or by a DNS name
cannot be judged offline, so it passes.
"""

from __future__ import annotations

import copy
import ipaddress
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from circtune.errors import ConfigError

PLACEHOLDER_PREFIX = "REPLACE_WITH_"
# Ray's AWS launcher opens SSH to every address itself, because it connects to
# the nodes over SSH, so a rule for port 22 adds no exposure.
SSH_PORT = 22

_PLACEHOLDER = re.compile(re.escape(PLACEHOLDER_PREFIX) + r"[A-Za-z0-9_]*")
# Options whose value is an address a server listens on, in ``--opt VALUE``,
# ``--opt=VALUE`` or socat's ``bind=VALUE`` form.
_BIND_OPTION = re.compile(
    r"(?P<option>--(?:host|dashboard-host|bind|ip|listen|node-ip-address)|(?<![\w-])bind)(?:=|\s+)(?P<value>[^\s,;]+)"
)
_ANY_IPV4 = re.compile(r"(?<![\d.])0\.0\.0\.0(?![\d./])")
_SOCAT_LISTEN = re.compile(r"\b(?:TCP|TCP4|TCP6|UDP|UDP4|UDP6)-LISTEN:(?P<options>[^\s]+)", re.IGNORECASE)
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_cluster_config(path: str | os.PathLike[str], *, ray_schema: bool = True) -> list[str]:
    """Check a cluster YAML file for unfilled placeholders, public binds and schema errors.

    Args:
        path: The cluster-launcher file, for example ``cluster.yaml``.
        ray_schema: Also run Ray's offline preparation and schema validation.

    Returns:
        One line per problem, ``"<key path>: <what is wrong>; <how to fix it>"``,
        empty when the file is ready for ``ray up``.

    Raises:
        ConfigError: If the file is missing, is not valid YAML or is not a mapping.
    """
    config = load_cluster_config(path)
    problems = find_placeholders(config) + find_public_binds(config)
    if ray_schema:
        problems += ray_schema_problems(config)
    return problems


def load_cluster_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a cluster YAML file into a dict.

    Raises:
        ConfigError: If the file is missing, is not valid YAML or is not a mapping.
    """
    source = Path(path)
    try:
        text = source.read_text()
    except OSError as error:
        raise ConfigError(f"{source}: cannot read the cluster file ({error.strerror}); check the path") from error
    try:
        config = yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise ConfigError(
            f"{source}{where}: invalid YAML, {error.problem or error.context}; fix the syntax there"
        ) from error
    except yaml.YAMLError as error:
        reason = " ".join(str(error).split())
        raise ConfigError(f"{source}: invalid YAML ({reason}); fix the syntax") from error
    if not isinstance(config, dict):
        raise ConfigError(
            f"{source}: expected a mapping of cluster settings (cluster_name, provider, ...), "
            f"but got {type(config).__name__}"
        )
    return config


def find_placeholders(config: Mapping[str, Any]) -> list[str]:
    """Return one problem per placeholder left in a key or value, in file order."""
    problems = []
    for key_path, text, is_key in _strings(config):
        for match in _PLACEHOLDER.finditer(text):
            where = "key" if is_key else "value"
            problems.append(
                f"{key_path}: the {where} still contains the placeholder {match.group()}; "
                "replace it with your own value, as the comments in the file describe"
            )
    return problems


def find_public_binds(config: Mapping[str, Any]) -> list[str]:
    """Return one problem per listener on every interface or a public address, and per open security-group rule."""
    problems: list[str] = []
    for key_path, text, is_key in _strings(config):
        if not is_key:
            problems.extend(f"{key_path}: {problem}" for problem in _bind_problems(text))
    problems.extend(_security_group_problems(config))
    return problems


def ray_schema_problems(config: Mapping[str, Any]) -> list[str]:
    """Return what Ray's offline preparation and schema validation reject, as at most one problem.

    Ray stops at the first error, so a file with several schema errors needs
    several rounds. Neither step imports a cloud SDK for the AWS provider.
    """
    import jsonschema  # type: ignore[import-untyped]
    from ray.autoscaler._private.util import prepare_config, validate_config

    provider = config.get("provider")
    if not isinstance(provider, Mapping) or "type" not in provider:
        return ["provider: missing or without a type; set provider.type, for example aws"]
    try:
        validate_config(prepare_config(copy.deepcopy(dict(config))))
    except jsonschema.ValidationError as error:
        key_path = _format_path(tuple(error.absolute_path)) or "top level"
        return [f"{key_path}: {error.message}; Ray's cluster schema rejects it"]
    except NotImplementedError as error:
        return [f"provider.type: {error}; use a provider that Ray supports, for example aws"]
    except (ValueError, RuntimeError, KeyError, TypeError, AssertionError) as error:
        return [f"top level: Ray's cluster-config preparation failed ({type(error).__name__}: {error})"]
    return []


def _bind_problems(text: str) -> Iterator[str]:
    reported_any = False
    for match in _BIND_OPTION.finditer(text):
        option, value = match.group("option"), match.group("value").strip("'\"")
        kind = _classify_host(_host_of(value))
        if kind == "any":
            reported_any = True
            yield (
                f"{option} {value} listens on every network interface; bind 127.0.0.1 and forward the port "
                "(ray attach cluster.yaml -p PORT, or ssh -L), or bind the node's private address"
            )
        elif kind == "public":
            yield f"{option} {value} listens on a public address; bind 127.0.0.1 or the node's private address"
    if not reported_any and _ANY_IPV4.search(text):
        yield "0.0.0.0 makes a server listen on every network interface; use 127.0.0.1 or the node's private address"
    for match in _SOCAT_LISTEN.finditer(text):
        if "bind=" not in match.group("options"):
            yield (
                f"socat {match.group().split(',')[0]} without bind= listens on every network interface; "
                "add bind=127.0.0.1 or bind=<private address>"
            )


def _host_of(value: str) -> str:
    """Return the host part of ``HOST``, ``HOST:PORT`` or ``[IPV6]:PORT``."""
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value[1:]
    if value.count(":") == 1:
        return value.split(":")[0]
    return value


def _classify_host(host: str) -> str:
    """Return ``any``, ``public``, or ``ok`` for a host that is private, loopback or not known offline."""
    if host in ("*", "::", ""):
        return "any"
    if "$" in host or "`" in host:
        return "ok"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "ok"
    if address.is_unspecified:
        return "any"
    return "public" if address.is_global else "ok"


def _security_group_problems(config: Mapping[str, Any]) -> Iterator[str]:
    provider = config.get("provider")
    group = provider.get("security_group") if isinstance(provider, Mapping) else None
    rules = group.get("IpPermissions") if isinstance(group, Mapping) else None
    if not isinstance(rules, list):
        return
    for index, rule in enumerate(rules):
        if not isinstance(rule, Mapping):
            continue
        ports = (rule.get("FromPort"), rule.get("ToPort"))
        if ports == (SSH_PORT, SSH_PORT):
            continue
        ranges = [item.get("CidrIp") for item in rule.get("IpRanges") or [] if isinstance(item, Mapping)]
        ranges += [item.get("CidrIpv6") for item in rule.get("Ipv6Ranges") or [] if isinstance(item, Mapping)]
        for cidr in ranges:
            if cidr in ("0.0.0.0/0", "::/0"):
                port_text = "all ports" if ports[0] in (None, -1) else f"ports {ports[0]}-{ports[1]}"
                yield (
                    f"provider.security_group.IpPermissions[{index}]: opens {port_text} to the internet ({cidr}); "
                    "allow only your own address range (for example 203.0.113.7/32) or forward the port over SSH"
                )


def _strings(node: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str, str, bool]]:
    """Yield ``(key path, text, is_key)`` for every string key and value, depth first."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            if isinstance(key, str):
                yield _format_path((*path, key)), key, True
            yield from _strings(value, (*path, str(key)))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _strings(item, (*path, index))
    elif isinstance(node, str):
        yield _format_path(path), node, False


def _format_path(path: tuple[Any, ...]) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _PLAIN_KEY.match(str(part)):
            text += f".{part}" if text else str(part)
        else:
            text += f'["{part}"]'
    return text
