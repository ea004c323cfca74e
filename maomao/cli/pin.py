"""Pinning a tool's image: ``tool add … --pin`` and ``tool pin NAME``.

The container engine named by ``[runner] docker_host`` (else
``DOCKER_HOST``, else the usual sockets) resolves the image's repository
digest, pulling the image when it lacks it.  A pinned tool runs
``repository@digest`` on every member; a tag that moves changes nothing
until the tool is pinned again.  The docker SDK is imported here only.
"""

from __future__ import annotations

import dataclasses

from maomao.cli.context import Common, with_registry
from maomao.config import Config, load_config
from maomao.errors import ConditionFailed, MaomaoError, NotFound, UsageError
from maomao.model import Tool, check_name
from maomao.registry import Registry, parse_at
from maomao.runner import pinned_reference


def resolve(image: str, config: Config) -> str:
    """The repository digest (``sha256:…``) the engine gives ``image`` now."""
    from maomao.runner.container import connect, engine_url, resolve_digest

    client = connect(engine_url(config.runner), config.store.timeout)
    try:
        return resolve_digest(client, image, config.runner.pull_timeout)
    finally:
        client.close()


def pinned(tool: Tool, config: Config) -> Tool:
    """``tool`` with the digest of its image as the engine has it now."""
    return dataclasses.replace(tool, digest=resolve(tool.image, config))


def pin_tool(common: Common, name: str) -> None:
    """Resolve and store the digest of a registered tool's image."""
    check_name(name, "tool name")
    config = load_config(common.config)

    async def read(registry: Registry, _config: Config) -> tuple[Tool, int]:
        kv = await registry.store.get(registry.keys.tool(name))
        if kv is None:
            raise NotFound(f"no tool named {name!r}")
        return parse_at(kv, Tool, registry.keys.tools), kv.mod_revision

    tool, revision = with_registry(common, read)
    if tool.runtime != "container":
        raise UsageError(f"tool {name} uses the {tool.runtime} runtime: it has no image to pin")
    new = pinned(tool, config)

    async def write(registry: Registry, _config: Config) -> None:
        try:
            await registry.store.put(registry.keys.tool(name), new.to_value(), if_revision=revision)
        except ConditionFailed:
            raise MaomaoError(f"tool {name} changed while its image was being resolved; run tool pin again") from None

    with_registry(common, write)
    before = f" (was {tool.digest})" if tool.digest and tool.digest != new.digest else ""
    print(f"tool {name} pinned to {pinned_reference(new.image, new.digest)}{before}")
