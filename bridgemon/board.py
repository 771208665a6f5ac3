"""The board: every site's verdict, judged once when its round completes, ready to read.

Readers (/metrics, the API, the status page) never judge: at 12,000 sites judging every
site on each request took a second of event loop, stalled the engine and turned answered
echoes into losses. Here a site is judged when its round is recorded, together with what
readers show of it (its exposition lines and its API object, a ``SiteView``); a scrape then
only joins prepared bytes. Work follows change, not reading:

- a recorded round re-judges that site, and its children only if the site's "down" state
  (what makes a child ``parent_down``) changed — and so on down the tree; the daemon has
  the children judged a slice at a time (``cascade_in_steps``): a province's communes
  are hundreds;
- a verdict that depends on time alone (``stale``: no probe for three intervals) is found
  by ``sweep``, from a heap of deadlines, not by scanning;
- a reload re-judges everything once.

What a board judges with besides the windows is data given to it, never process state:
the vantage's label prefix (``metrics.vantage_labels``: written into each site's prepared
lines, so a scrape costs no more with it) and the vantage's isolation (since when it is
cut off, or None), which readiness's pure ``judge_isolated`` applies to every final
verdict; ``isolate`` switches it and publishes every site again.

Each view also says since when the site has had its verdict (``since``: the state changed
then) and carries the site's ``Trend`` (the last hours, for its page). A board built for a
reload from the running one (``Board(previous=...)``) keeps both for the sites that stay
and are probed alike.

The board depends on readiness (pure) and on the renderers in metrics and views; nothing
it does touches the network or the windows except to read them.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Mapping

from bridgemon import metrics
from bridgemon.cooperative import Steps
from bridgemon.inventory import Inventory, Site
from bridgemon.readiness import (
    STALE_AFTER_INTERVALS,
    Verdict,
    judge_isolated,
    judge_own,
    judge_under,
)
from bridgemon.snapshot import SiteView
from bridgemon.trend import Trend
from bridgemon.vantage_view import Failures, clock_time
from bridgemon.verdicts import State
from bridgemon.views import encode_facts, site_row
from bridgemon.windows import SiteWindow

# A stale verdict names how long the site has been silent; refresh that figure this often.
STALE_REFRESH = 60.0


def _stale_after(site: Site) -> float:
    """How long after its latest probe began a site's verdict goes stale."""
    return STALE_AFTER_INTERVALS * site.interval + site.longest_probe


def _down(verdict: Verdict | None) -> bool:
    """Does this verdict make the site's children ``parent_down`` when they fail too."""
    return verdict is not None and (verdict.up is False or verdict.state == State.PARENT_DOWN)


class Board:
    def __init__(self, previous: Board | None = None, *, labels: str = "",
                 isolated_since: float | None = None) -> None:
        self.labels = labels  # the vantage's, first in every site line ("" for none)
        self.isolated_since = isolated_since
        self._isolated = clock_time(isolated_since)  # what judge_isolated names
        self.inventory: Inventory | None = None
        self.views: dict[str, SiteView] = {}
        self._own: dict[str, Verdict] = {}
        self._info: dict[str, bytes] = {}
        self._label: dict[str, bytes] = {}  # metrics.site_label of each site
        self._facts: dict[str, bytes] = {}
        self._windows: Mapping[str, SiteWindow] = {}
        # When to look at a site again for staleness: one entry per probed site (in
        # ``_queued``), moved on when it comes up and the site was probed since.
        self._deadlines: list[tuple[float, str]] = []
        self._queued: set[str] = set()
        self._now = 0.0  # of the judging under way: a changed verdict is dated with it
        # What a reload's board takes over from the running one, site by site.
        self._before: Mapping[str, SiteView] = previous.views if previous is not None else {}
        self._before_sites = previous.inventory.sites if previous and previous.inventory \
            else {}
        self._trends: dict[str, Trend] = {}
        # Sites to judge again because their parent's "down" changed, left by
        # ``update(children_later=True)`` for ``cascade_in_steps``.
        self._cascade: deque[str] = deque()
        # What the vantage watch decides isolation from, kept as views are published
        # (counting 12,000 views every few seconds cost more than the rest of the watch).
        self.failures = Failures()
        self._top: frozenset[str] = frozenset()

    # -- whole inventory -----------------------------------------------------------------

    def sync(self, inventory: Inventory, windows: Mapping[str, SiteWindow],
             now: float) -> None:
        """Judge every site of a (new) inventory, parents first. All or nothing: if judging
        fails half-way, the board keeps the inventory it had."""
        for _ in self.sync_in_steps(inventory, windows, now):
            pass

    def sync_in_steps(self, inventory: Inventory, windows: Mapping[str, SiteWindow],
                      now: float, step: int = 250) -> Steps[None]:
        """``sync``, pausing (yielding) after every ``step`` sites, so a caller on the
        event loop can let it run between them: judging 12,000 sites takes 1-3 s here. All
        or nothing still: an exception, or closing the generator half-way, restores the
        inventory the board had. (An inventory's ``order`` and ``depths``, 30 ms each at
        12,000 sites, are best computed before: the daemon does it in the thread that loads
        the file.)"""
        extra = sorted({key for site in inventory.sites.values() for key in site.labels})
        _ = inventory.order, inventory.depths  # computed here, never in a request
        kept = (self.inventory, self.views, self._own, self._info, self._label, self._facts,
                self._windows, self._deadlines, self._queued, self._trends, self.failures,
                self._top, self._cascade)
        if self.inventory is not None and self.views:  # synced again: take over from itself
            self._before, self._before_sites = self.views, self.inventory.sites
        try:
            self._now = now
            trends: dict[str, Trend] = {}
            info: dict[str, bytes] = {}
            label: dict[str, bytes] = {}
            facts: dict[str, bytes] = {}
            for index, site in enumerate(inventory.sites.values(), 1):
                trends[site.id] = self._kept_trend(site)
                info[site.id] = metrics.info_series(site, extra, self.labels)
                label[site.id] = metrics.site_label(site.id, self.labels)
                facts[site.id] = encode_facts(site)
                if index % step == 0:
                    yield
            self._trends, self._info, self._label, self._facts = trends, info, label, facts
            self.inventory = inventory
            self._windows = windows
            self._own = {}
            self._cascade = deque()  # judged afresh below, every one
            self._deadlines = []
            self._queued = set()
            self.views = {}
            self.failures = Failures()
            self._top = frozenset(inventory.roots)
            for index, site_id in enumerate(inventory.order, 1):
                site = inventory.sites[site_id]
                self._own[site_id] = self._judge_own(site, now)
                self._publish(site, self._final(site))
                if index % step == 0:
                    yield
            self._before, self._before_sites = {}, {}  # taken over: let the old board go
        except BaseException:
            (self.inventory, self.views, self._own, self._info, self._label, self._facts,
             self._windows, self._deadlines, self._queued, self._trends, self.failures,
             self._top, self._cascade) = kept
            raise

    def _kept_trend(self, site: Site) -> Trend:
        before = self._before.get(site.id)
        old = self._before_sites.get(site.id)
        if before is not None and old is not None and old.probe_key() == site.probe_key():
            return before.trend
        return Trend()

    # -- as rounds complete --------------------------------------------------------------

    def update(self, site_id: str, now: float, *, children_later: bool = False) -> None:
        """The site's round was recorded: judge it, and its children if it matters to them:
        now, or with ``children_later`` left for ``cascade_in_steps``."""
        inventory = self.inventory
        if inventory is None:
            return
        site = inventory.sites.get(site_id)
        if site is None:
            return
        self._now = now
        window = self._windows.get(site_id)
        if window is not None and window.rounds:
            self._trends[site_id].add(window.rounds[-1])
        self._own[site_id] = self._judge_own(site, now)
        self._rejudge(site, children_later=children_later)

    @property
    def cascading(self) -> bool:
        """Whether sites wait to be judged again for their parent (``cascade_in_steps``)."""
        return bool(self._cascade)

    def cascade_in_steps(self) -> Steps[None]:
        """Judge again the children left by ``update(children_later=True)``, and theirs
        while "down" keeps changing, pausing (yielding) after each, for a caller on the
        event loop (``cooperative.run``). A province of the 2025 shape going down or up
        re-judges its 350 communes: 15-26 ms in one step here. Until then a child shows
        its verdict as of its own last round; what each round measured is never late."""
        inventory = self.inventory
        cascade = self._cascade
        while cascade and inventory is self.inventory and cascade is self._cascade:
            assert inventory is not None
            site = inventory.sites.get(cascade.popleft())
            if site is not None and site.id in self._own:
                self._rejudge(site, children_later=True)
            yield

    def sweep(self, now: float) -> int:
        """Re-judge the sites whose verdict went stale by the passing of time alone; how
        many there were."""
        steps = self.sweep_in_steps(now)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    def sweep_in_steps(self, now: float) -> Steps[int]:
        """``sweep``, pausing (yielding) after each site it looks at, so that a caller on the
        event loop (``cooperative.run``) can let it run a slice at a time: when a whole
        inventory goes silent at once, re-judging it takes a second or more here.

        Cheap when nothing went stale, the usual case: each probed site has one entry in
        the deadline heap, which comes up once per ``STALE_AFTER_INTERVALS`` intervals
        and, the site probed since, is put back for when that probe goes stale. (An entry
        per judgement, 37,000 at 12,000 sites every 15 s, took 4-9 ms of the loop every
        second to pop, all obsolete.)"""
        inventory = self.inventory
        deadlines = self._deadlines
        changed = 0
        while deadlines and deadlines[0][0] <= now and inventory is self.inventory:
            _when, site_id = heapq.heappop(deadlines)
            self._queued.discard(site_id)
            view = self.views.get(site_id)
            site = inventory.sites.get(site_id) if inventory is not None else None
            if site is None or view is None or view.verdict.last_probe is None:
                pass  # gone, or never probed: nothing can go stale
            elif (due := view.verdict.last_probe + _stale_after(site)) > now:
                # probed since: look again when that probe goes stale
                heapq.heappush(deadlines, (due, site_id))
                self._queued.add(site_id)
            else:
                self._now = now
                self._own[site_id] = self._judge_own(site, now)
                self._rejudge(site)
                changed += 1
            yield
        return changed

    # -- judging -------------------------------------------------------------------------

    def _judge_own(self, site: Site, now: float) -> Verdict:
        window = self._windows.get(site.id)
        rounds = window.rounds if window is not None else ()
        verdict = judge_own(site, rounds, now)
        if verdict.last_probe is not None and site.id not in self._queued:
            due = verdict.last_probe + _stale_after(site)
            if due <= now:  # already stale: look again later to refresh the age it names
                due = now + STALE_REFRESH
            heapq.heappush(self._deadlines, (due, site.id))
            self._queued.add(site.id)
        return verdict

    def _final(self, site: Site) -> Verdict:
        assert self.inventory is not None
        parent = self.views.get(site.parent) if site.parent is not None else None
        return judge_isolated(judge_under(self._own[site.id],
                                          parent.verdict if parent else None,
                                          self.inventory), self._isolated)

    def isolate(self, since: float | None, step: int = 250) -> Steps[None]:
        """Switch the vantage's isolation and publish every site again, parents first,
        pausing after every ``step`` sites (12,000 sites take a second or two)."""
        self.isolated_since = since
        self._isolated = clock_time(since)
        inventory = self.inventory
        if inventory is None:
            return
        for index, site_id in enumerate(inventory.order, 1):
            if site_id in self._own:
                site = inventory.sites[site_id]
                self._publish(site, self._final(site))
            if index % step == 0:
                yield

    def _rejudge(self, site: Site, *, children_later: bool = False) -> None:
        """Publish the site's final verdict; follow the tree down while 'down' changes
        (``children_later``: leave the children in the cascade's queue)."""
        assert self.inventory is not None
        inventory = self.inventory
        stack = [site]
        while stack:
            current = stack.pop()
            before = self.views.get(current.id)
            verdict = self._final(current)
            self._publish(current, verdict)
            if _down(verdict) != _down(before.verdict if before else None):
                if children_later:
                    self._cascade.extend(inventory.children[current.id])
                else:
                    stack.extend(inventory.sites[child]
                                 for child in inventory.children[current.id])

    def _publish(self, site: Site, verdict: Verdict) -> None:
        window = self._windows.get(site.id)
        latest = window.rounds[-1].results if window is not None and window.rounds else ()
        echoes = (window.echoes_sent, window.echoes_received) if window is not None \
            else None
        series = metrics.site_series(self._label[site.id], self._info[site.id], verdict,
                                     latest, echoes)
        row = site_row(self._facts[site.id], verdict, latest)
        shown = self.views.get(site.id)
        if shown is None or shown.verdict.up is not verdict.up:  # (the counts moved)
            top = site.id in self._top
            failures = self.failures.counting(verdict.up, top)
            if shown is not None:
                failures = failures.counting(shown.verdict.up, top, -1)
            self.failures = failures
        before = shown or self._before.get(site.id)
        since = before.since if before is not None and before.verdict.state == verdict.state \
            else self._now
        self.views[site.id] = SiteView(verdict, latest, echoes or (0, 0), series, row, since,
                                       self._trends[site.id])
