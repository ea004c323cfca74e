"""``maomao daemon``: one member of the collaboration, one Trio root nursery.

Started in order, each with ``await nursery.start()`` (DESIGN section 4):

1. signals: SIGTERM/SIGINT drain and stop, SIGHUP reloads the config;
   then the Prometheus endpoint when ``[metrics] listen`` is set
   (:mod:`maomao.metrics`; an address that cannot be bound is logged, not fatal);
2. membership: the lease and ``members/<me>``, kept alive (registered
   before the nursery opens: a name in use stops the daemon with exit 1);
3. the state cache: read, then follow with a watch;
4. the outbox: records of runs finished while the store was away;
5. the executor (with the tools' data repositories and their pending
   pushes, and spike detection with its webhook sender), then the scheduler;
6. the retention sweeper (old run records);
7. the status task: ``STATUS=`` lines and the watchdog, which pings only
   while the scheduler loop makes progress.

``READY=1`` goes out once all of that has started, so it means the store
answers and this member is registered.  On SIGTERM the daemon sends
``STOPPING=1``, claims nothing more, lets running runs finish for
``shutdown_grace`` seconds, cancels the rest (recorded ``cancelled``),
revokes its lease and exits 0.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import Literal

import trio

from maomao.config import Config, load_config
from maomao.daemon.cache import StateCache
from maomao.daemon.datarepos import DataRepos
from maomao.daemon.detection import Detection
from maomao.daemon.executor import Executor
from maomao.daemon.membership import Membership
from maomao.daemon.notify import Notifier
from maomao.daemon.recording import Outbox
from maomao.daemon.retention import RetentionSweeper
from maomao.daemon.scheduler import Scheduler
from maomao.errors import StoreError, StoreUnavailable
from maomao.metrics import InstrumentedStore, Metrics, serve_metrics
from maomao.runner import Runner, RunnerUnavailable
from maomao.runner.process import ProcessRunner
from maomao.store import Store, open_store
from maomao.store.keys import Keys

log = logging.getLogger("maomao.daemon")


def available_runners(config: Config) -> tuple[dict[str, Runner], str]:
    """The runtimes this member can run (host processes, and containers when an engine is
    configured or found), and a line saying where containers run or why they do not."""
    from maomao.runner.container import ContainerRunner, engine_url

    runners: dict[str, Runner] = {"process": ProcessRunner()}
    try:
        url = engine_url(config.runner)
    except RunnerUnavailable as exc:
        return runners, f"container runtime not available: {exc}"
    runners["container"] = ContainerRunner(config.runner)
    return runners, f"container runtime: engine at {url}"


class Daemon:
    """The member: its parts, wired together, and its life cycle."""

    def __init__(self, config: Config, config_path: str | None, notifier: Notifier) -> None:
        self.config = config
        self.config_path = config_path
        self.notifier = notifier
        self.metrics = Metrics()
        self.store: Store = InstrumentedStore(open_store(config.store), self.metrics)
        self.keys = Keys(config.store.prefix)
        self.runners, self.runtimes_note = available_runners(config)
        self.membership = Membership(
            self.store, self.keys, config.member, config.store.ttl, tuple(sorted(self.runners)),
            config.daemon.labels,
        )
        self.cache = StateCache(self.store, self.keys)
        private_state_dir(config.daemon.state_dir)
        self.outbox = Outbox(self.store, config.daemon.state_dir / "outbox", self._settled)
        self.repos = DataRepos(config, self.store, self.keys)
        self.detection = Detection(config, self.store, self.keys, self.metrics)
        self.executor = Executor(
            self.store, self.keys, config, self.cache, self.runners, self.outbox, repos=self.repos,
            detection=self.detection, metrics=self.metrics,
        )
        self.metrics.gauge("maomao_members", "Live members of the collaboration.", lambda: len(self.cache.members))
        self.metrics.gauge("maomao_outbox_records", "Run records waiting in the outbox.", lambda: len(self.outbox))
        self.metrics.gauge("maomao_runs_active", "Runs going on this member.", lambda: len(self.executor.active))
        self.scheduler = Scheduler(self.store, self.keys, config, self.cache, self.membership, self.executor)
        self.retention = RetentionSweeper(self.store, self.keys, config, self.cache, self.membership)

    def status(self) -> str:
        """The one-line summary systemd shows."""
        store = "store ok" if self.membership.store_ok else "store UNREACHABLE"
        outbox = len(self.outbox)
        return (
            f"{self.membership.name}: {len(self.cache.members)} members, "
            f"{len(self.cache.schedules)} scheduled tools, {len(self.executor.active)} runs active, "
            f"{self.executor.finished} finished; {store} ({self.store.location})"
            + (f"; {outbox} records in the outbox" if outbox else "")
        )

    async def _remove_orphans(self) -> None:
        """Containers a previous life of this member left running (it was killed) are removed."""
        from maomao.runner.container import ContainerRunner

        runner = self.runners.get("container")
        if not isinstance(runner, ContainerRunner):
            return
        try:
            removed = await runner.remove_orphans(self.config.member)
        except RunnerUnavailable as exc:
            log.warning("could not look for containers left by a previous run of this member: %s", exc)
            return
        if removed:
            log.warning("removed %d container(s) left by a previous run of this member", removed)

    async def _register(self) -> None:
        """Register, waiting for the store to answer (systemd's start timeout bounds it)."""
        while True:
            try:
                await self.membership.register()
                return
            except (StoreUnavailable, StoreError) as exc:
                log.error("cannot register: %s; retrying", exc)
                self.notifier.status(f"waiting for the store: {exc}")
                await trio.sleep(1)

    async def _signals(self, nursery: trio.Nursery, *, task_status: trio.TaskStatus[None]) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            task_status.started()
            async for signum in signals:
                if signum == signal.SIGHUP:
                    await self._reload()
                    continue
                log.info("signal %s: stopping", signal.Signals(signum).name)
                await self._stop(nursery)
                return

    async def _reload(self) -> None:
        self.notifier.reloading()
        try:
            config = load_config(self.config_path)
        except Exception as exc:  # a bad file keeps the running config
            log.error("reload failed, keeping the running config: %s", exc)
        else:
            if config.store != self.config.store or config.member != self.config.member:
                log.warning("reload: [store] and member changes take effect at the next restart")
            self.config = config
            self.executor.config = config
            self.repos.config = config
            self.detection.config = config
            self.scheduler.config = config
            self.retention.config = config
            if config.daemon.labels != self.membership.labels:
                self.membership.labels = config.daemon.labels
                try:
                    await self.membership.update()
                except (StoreUnavailable, StoreError) as exc:
                    log.warning("reload: could not update the member record: %s", exc)
            log.info("configuration reloaded")
        self.notifier.ready(self.status())

    async def _stop(self, nursery: trio.Nursery) -> None:
        self.notifier.stopping()
        self.scheduler.stopped = True
        with trio.CancelScope(shield=True):
            await self.executor.drain(self.config.daemon.shutdown_grace)
            await self.membership.leave()
        nursery.cancel_scope.cancel()

    async def _settled(self, tool: str, run_id: str, outcome: Literal["recorded", "fenced"]) -> None:
        """A run's record landed from the outbox (push its commit now) or was fenced (never push it)."""
        known = self.cache.tools.get(tool)
        if outcome == "fenced" and known is not None:
            await self.repos.withdraw(known, run_id)
        self.repos.wake()

    def _push_waits(self, tool: str) -> bool:
        """Whether ``tool``'s pending pushes must wait: a run of it is going (its work tree is
        in use: a rebase would reset it under the run) or the outbox holds a record of it."""
        if any(key.startswith(f"{tool}/") for key in self.executor.active):
            return True
        prefix = self.keys.claims_of(tool)
        return any(key.startswith(prefix) for key in self.outbox.held)

    async def _report(self, *, task_status: trio.TaskStatus[None]) -> None:
        """STATUS= every second; WATCHDOG=1 only while the scheduler makes progress.

        The scheduler loop is healthy when it finished a pass since the last
        ping or is waiting between passes (it waits up to a second, longer
        than a short watchdog timeout); only a pass that hangs stops the pings.
        """
        task_status.started()
        interval = self.notifier.watchdog_interval
        seen = -1
        last_ping = trio.current_time()
        while True:
            self.notifier.status(self.status())
            if interval is not None and trio.current_time() - last_ping >= interval:
                if self.scheduler.progress != seen or self.scheduler.idle:
                    seen = self.scheduler.progress
                    self.notifier.watchdog()
                    last_ping = trio.current_time()
                else:
                    log.error("scheduler loop made no progress for %.1fs: no watchdog ping", interval)
            await trio.sleep(min(1.0, interval or 1.0))

    async def serve(self) -> None:
        await self._register()
        # said once registered: a daemon that refuses to start says only why
        (log.info if "container" in self.runners else log.warning)("%s", self.runtimes_note)
        await self._remove_orphans()
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self._signals, nursery)
                if self.config.metrics.listen is not None:
                    await nursery.start(serve_metrics, self.config.metrics.listen, self.metrics.render)
                await nursery.start(self.membership.keep_alive)
                await nursery.start(self.cache.follow)
                await nursery.start(self.outbox.flush_loop)
                await nursery.start(self.executor.serve)
                await nursery.start(self.repos.retry_loop, lambda: self.cache.tools, self._push_waits)
                await nursery.start(self.detection.webhook_loop)
                await nursery.start(self.scheduler.run)
                await nursery.start(self.retention.run)
                await nursery.start(self._report)
                self.notifier.ready(self.status())
                log.info("ready: %s", self.status())
        finally:
            with trio.CancelScope(shield=True):
                await self.membership.leave()
                await self.store.aclose()
        log.info("stopped")


def private_state_dir(path: Path) -> None:
    """The daemon's state directory (outbox, detection state, perhaps the store) is its own: 0700."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def run_daemon(config_path: str | Path | None = None) -> int:
    """Entry point of ``maomao daemon``: returns the exit status."""
    from maomao.journal import setup_logging

    setup_logging()
    notifier = Notifier.from_environment()
    config = load_config(config_path)
    daemon = Daemon(config, str(config_path) if config_path else None, notifier)
    trio.run(daemon.serve)
    return 0
