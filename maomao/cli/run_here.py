"""``maomao ctl tool run NAME --here``: run a tool inside ``ctl``, as a member would, and record it.

The data repository is cloned or updated, the tool runs (container or host
process), what it wrote is committed and pushed, and the run is recorded as
this machine's ``[maomao] member``.  Ctrl-C stops the tool; the run is
recorded ``cancelled``.
"""

from __future__ import annotations

from datetime import UTC, datetime

import trio

from maomao.cli.follow import until_interrupted
from maomao.cli.run_now import INTERRUPTED, new_run_id, say
from maomao.cli.runs import emit_report, outcome_line
from maomao.config import Config
from maomao.errors import MaomaoError
from maomao.model import Run, utc_iso
from maomao.registry import Registry


async def run_here(registry: Registry, config: Config, tool_name: str) -> int:
    """Run the tool in this process, its data repository and all, and record the run."""
    from maomao.daemon.datarepos import DataRepos, GitOutcome, RunFacts
    from maomao.gitdata import GitError
    from maomao.runner import Confinement, Runner, RunnerUnavailable, RunOutcome, RunSpec, log_path, read_tail

    tool = await registry.tools.get(tool_name)
    runner: Runner
    if tool.runtime == "container":
        from maomao.runner.container import ContainerRunner

        runner = ContainerRunner(config.runner)
        runner.remove_in_background = False  # this process ends with the run
    else:
        from maomao.runner.process import ProcessRunner

        runner = ProcessRunner()
    now = datetime.now(UTC)
    run_id = new_run_id(now)
    spec = RunSpec(
        tool=tool,
        run_id=run_id,
        slot=run_id,
        member=config.member,
        workdir=config.importdir / tool.name,
        log_path=log_path(config.importdir, tool.name, run_id),
        timeout=tool.timeout or config.daemon.run_timeout,
        kill_grace=config.daemon.kill_grace,
        confinement=Confinement.of(tool, config.runner),
    )
    repos = DataRepos(config)
    say(f"running {run_id} of tool {tool.name} here, as {config.member}")

    async def work() -> tuple[RunOutcome, str]:
        try:
            note = await repos.prepare(tool)
            return await runner.run(spec), note
        except (GitError, RunnerUnavailable) as exc:
            return RunOutcome("failed", None, now, datetime.now(UTC), read_tail(spec.log_path), str(exc)), "skip"

    result, interrupted = await until_interrupted(work)
    # interrupted: the runner stopped the tool before it returned an outcome
    outcome, note = result or (
        RunOutcome("cancelled", None, now, datetime.now(UTC), read_tail(spec.log_path), "interrupted"), ""
    )
    git = GitOutcome()
    if note != "skip":  # the tool ran (or was stopped): commit what it wrote
        with trio.CancelScope(shield=True):
            facts = RunFacts(tool.name, run_id, run_id, config.member, "request", outcome.state)
            git = await repos.finish(tool, facts, note)
    run = Run(
        id=run_id,
        tool=tool.name,
        slot=run_id,
        trigger="request",
        member=config.member,
        state=outcome.state,
        started=utc_iso(outcome.started),
        finished=utc_iso(outcome.finished),
        exit_code=outcome.exit_code,
        output_tail=outcome.output_tail,
        detail="; ".join(d for d in (outcome.detail, git.detail) if d),
        commit=git.commit,
        push=git.push,
        branch=git.branch,
        image=outcome.image,
    )
    say(outcome_line(run))
    emit_report(run)
    try:
        with trio.CancelScope(shield=True):
            await registry.store.put(registry.keys.run(tool.name, run_id), run.to_value(), if_revision=0)
    except MaomaoError as exc:
        raise MaomaoError(f"run {run_id} could not be recorded: {exc}") from exc
    if interrupted:
        return INTERRUPTED
    return 0 if run.state == "succeeded" else 1
