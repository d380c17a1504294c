"""The adaptive rate policy: events in (sends, refusals, the server's hints), decisions out.

Plain code with the time as a parameter: no event loop, no I/O, so the whole policy is
tested on tables of cases and run by the pacing simulator. The contract, for any pacer
(local or shared) that feeds it:

- ``on_send(now)`` for every request sent, in the order sent.
- ``on_refused(now, sent_at, wait)`` for a refusal (a 429) of the request sent at
  ``sent_at``, with the server's requested wait in seconds already parsed (``None``: no
  hint); ``refused=False`` for an accepted answer that said the quota is spent. It
  returns a ``Decision``: the pause (bounded by ``max_pause``), what was asked, the new
  rate if it changed, and what was measured.
- ``rate_at(now)`` is the rate allowed at ``now``, at any time (idle or not).

How it decides:

- **Measure what the server took.** On a refusal, the requests this client sent in the
  server's window before the refused one, less those refused themselves (in whatever
  order their refusals arrive). For a server window of a second that is up to
  ``_WINDOW`` seconds of sending (a window that spans the last pause reaches back over
  it); for a longer wait (over ``_LONG_WAIT``) the window is taken to have begun with the
  earliest of those sends and to end when the wait does.
- **Know what the measure does not say.** A sample is *thin* when the server took fewer
  than ``ADAPTIVE_MIN_SAMPLE`` requests (and fewer than the rate allowed), or when this
  client sent slower than its rate allowed (cold start, a light or app-limited caller):
  a lower bound of the limit, not the limit (as BBR ignores app-limited samples). A thin
  sample lowers the rate to ``ADAPTIVE_THIN_BACKOFF`` times the rate in force (never
  below the sample) and the rate climbs straight back; a second thin sample, taken after
  the first one's pause, that agrees with it is the limit after all.
- **What a full sample says.** If the server took clearly less than this client sent,
  that is its limit: the rate drops to ``ADAPTIVE_BACKOFF`` times it. If it took about
  all it was sent and then refused, the limit is just below the rate in force: the same
  drop from that (refused while resting at a measured rate, the measure ran high: a
  further ``_RESTING_BACKOFF``). Refused again right after such a drop, the limit fell:
  what the server took since the last refusal, the pause included, says how far (at most
  a drop to ``_FELL_BACKOFF`` of the rate in force), if that is a sample: the server
  took as many since as a sample needs (``ADAPTIVE_MIN_SAMPLE``, or ``_APP_LIMITED`` of a
  second's worth at a slower rate), or refused after a pause that left it room for as
  many at the rate allowed. Otherwise (a few taken after a short pause) the client cannot
  tell a limit that fell from a key other clients filled for a moment (on a shared key, a
  client at a quarter of the limit meets such a refusal a few requests after its last
  one; a lone client whose limit fell is refused again after the server took dozens at
  the lowered rate, or at once after a pause of a second): the rate just lowered stands,
  the refusal only pauses, twice at most (a refusal and one in flight beside it): a third
  request refused since the last lowering is the evidence (a lone client whose limit fell
  keeps being refused after the short pauses of a token bucket's fractional hints; a key
  others filled for a moment rarely refuses the same small client three times). A spent
  quota on a request the server took is only ever the rate at the limit, not over it: the
  same drop from the lower of the measure and the rate in force, none of the further ones.
- **Once per burst.** Refusals of requests sent before a decision are the burst it acted on.
- **Grow back whatever the fall.** After the pause the rate climbs back to just below
  the limit found (``ADAPTIVE_REST`` of it; after a thin sample, to the rate in force)
  within ``ADAPTIVE_RECOVER`` seconds, however far it fell. It rests there
  ``ADAPTIVE_REST_TIME`` seconds (polite: no refusal every few seconds), then probes on
  a cubic: ``ADAPTIVE_PROBE`` seconds on it has grown by the larger of
  ``ADAPTIVE_PROBE_GAIN`` times the resting rate and ``ADAPTIVE_PROBE_STEP`` req/s. A
  probe refused while the server takes about the resting rate goes back to the lower of
  the two: the limit has not moved. Never above the configured ceiling.
- **Other clients on the key (no shared limit): fair shares.** As Chiu and Jain show for
  senders that only see their own refusals, shares converge when every client gives
  back in proportion to its own rate and climbs by the same amount: each measure is
  this client's own take (refusals hit each client in proportion to its sends), and
  below ``ADAPTIVE_PROBE_STEP / ADAPTIVE_PROBE_GAIN`` req/s the probe grows by the same
  step for every client. A client refused while its rate is under ``_SHARING`` of the
  most the server was ever measured to take from it (``peak``), in a sample where the
  server took about all it sent (at most a few refused), met a key others filled: it
  keeps its rate and probes again at once, instead of backing off further (a "limit
  that fell" or "the measure ran high"), so the small client is never the one pushed
  to the floor (a refused probe of such a client counts as such a sample too). A clear
  measure (many refused) still counts in full. Below ``_SMALL`` req/s the rest before a
  probe shortens in proportion to the rate held: on a key others filled unevenly, the
  small client probes first, into what the others leave, and climbs towards its share;
  a client alone at such a rate only probes more often.
- A refusal before anything was accepted only pauses: it says nothing about the rate.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable

import msgspec

from .._constants import (
    ADAPTIVE_BACKOFF,
    ADAPTIVE_MIN_RATE,
    ADAPTIVE_MIN_SAMPLE,
    ADAPTIVE_PROBE,
    ADAPTIVE_PROBE_GAIN,
    ADAPTIVE_PROBE_STEP,
    ADAPTIVE_RECOVER,
    ADAPTIVE_REST,
    ADAPTIVE_REST_TIME,
    ADAPTIVE_THIN_BACKOFF,
    RATE_LIMIT_PAUSE,
)

__all__ = ["AdaptiveRate", "Decision", "RateState"]

# Longest server window a measure looks back over, in seconds.
_MAX_SPAN = 60.0
# A wait longer than this is taken as a sign of a server window longer than a second
# (a 1-s window rounded up to whole seconds says "1").
_LONG_WAIT = 1.5
# The server took clearly less than this client sent when it took under this share of it.
_TOOK_LESS = 0.9
# Seconds of sending a measure looks back over, for a server window of a second.
_WINDOW = 2.0
# Two thin measures agree when they are this close (a share of the first), the second
# counting at least _AGREE_MIN requests taken since the first's pause.
_AGREE = 0.25
_AGREE_MIN = 5
# A refusal this soon after the climb back ended is "again".
_AGAIN = 1.0
# Least share of the rate in force a limit that fell is taken to have fallen to, at once.
_FELL_BACKOFF = 0.5
# Share of the rate a client refused while resting at it backs off to (as well as
# ADAPTIVE_BACKOFF): the measure it rested on ran high.
_RESTING_BACKOFF = 0.95
# What the last decision was based on; after the last three it rested at a rate it held.
_THIN, _MEASURED, _SATURATED, _PROBED = "thin", "measured", "saturated", "probed"
_LEVELS = (_MEASURED, _SATURATED, _PROBED)
# A client that sent at less than this share of its rate was not held by its rate: what
# the server took from it is a lower bound of the limit.
_APP_LIMITED = 0.8
# A client refused while its rate in force is under this share of the most the server was
# ever measured to take from it shares the key with other clients.
_SHARING = 0.6
# A measure that counts at most this many refused (or this share of the sends) is only
# a full key, not this client's limit, when the client shares the key.
_FEW_REFUSED = 2
_FEW_REFUSED_SHARE = 0.1
# Below this rate (req/s) the probe grows by the same step for every client.
_SMALL = ADAPTIVE_PROBE_STEP / ADAPTIVE_PROBE_GAIN


class Decision:
    """What the policy decided about one refusal: how long to pause, and the new rate."""

    __slots__ = ("asked", "measured", "pause", "rate", "thin")

    def __init__(
        self,
        pause: float,
        asked: float,
        rate: float | None,
        measured: float | None,
        *,
        thin: bool = False,
    ) -> None:
        #: Seconds the whole client holds back from now (at most ``max_pause``).
        self.pause = pause
        #: Seconds the server asked for, which may be more.
        self.asked = asked
        #: The rate from now on, or ``None`` when this refusal leaves it as it is.
        self.rate = rate
        #: Requests per second the server was measured to take, if it was measured.
        self.measured = measured
        #: Whether the measure was only a lower bound of the server's limit.
        self.thin = thin

    def __repr__(self) -> str:
        return (
            f"Decision(pause={self.pause!r}, asked={self.asked!r}, rate={self.rate!r}, "
            f"measured={self.measured!r}, thin={self.thin!r})"
        )


class RateState(msgspec.Struct, array_like=True, frozen=True):
    """What ``AdaptiveRate``'s decisions leave behind: its state without the logs.

    ``AdaptiveRate.state()`` exports it and ``AdaptiveRate.restore()`` takes it back, so a
    pacer may store the policy elsewhere (the shared pacer keeps it in Redis) and decide
    the next refusal on the stored state and the logs it replays (``replay``). Stored as a
    JSON array in field order: a new field goes last, with a default, so that a state
    stored before it still loads.
    """

    #: Refusals of requests sent before this are the burst the last decision acted on.
    epoch: float
    #: The rate the curve climbs back to (``None``: no decision yet, the ceiling holds).
    held: float | None
    #: The rate right after the last lowering.
    floor: float
    #: When the pause of the last decision ended.
    resume: float
    #: Seconds resting at the held rate before probing (0 after a thin sample).
    rest: float
    #: What the last decision was based on ("": none yet).
    kind: str
    #: The rate the last decision took as the server's limit.
    target: float
    #: What the last decision measured.
    measured: float
    #: Times a refusal lowered the rate.
    lowered: int
    #: The most a full sample measured the server to take from this client.
    peak: float = 0.0


class _Log:
    """Times in order (any arrival order), counted over a span by bisection; old ones dropped."""

    __slots__ = ("_times",)

    def __init__(self) -> None:
        self._times: list[float] = []

    def add(self, t: float) -> None:
        times = self._times
        if not times or t >= times[-1]:
            times.append(t)
        else:
            bisect.insort(times, t)
        if len(times) > 4096 and times[0] < t - 2 * _MAX_SPAN:
            del times[: bisect.bisect_left(times, t - _MAX_SPAN)]

    def count(self, start: float, end: float, *, including: bool = False) -> int:
        """How many times lie in ``[start, end)`` (``[start, end]`` when ``including``)."""
        times = self._times
        stop = bisect.bisect_right(times, end) if including else bisect.bisect_left(times, end)
        return max(0, stop - bisect.bisect_left(times, start))

    def first_from(self, start: float) -> float | None:
        """The earliest time at or after ``start``, if any."""
        times = self._times
        i = bisect.bisect_left(times, start)
        return times[i] if i < len(times) else None


class AdaptiveRate:
    """The client's rate: the configured ``ceiling`` until the server refuses, then adapted."""

    __slots__ = (
        "_epoch",
        "_first",
        "_floor",
        "_held",
        "_kind",
        "_measured",
        "_peak",
        "_plateau",
        "_refused",
        "_rest",
        "_resume",
        "_sends",
        "_target",
        "backoff",
        "ceiling",
        "lowered",
        "max_pause",
    )

    def __init__(
        self,
        ceiling: float | None,
        *,
        backoff: float = ADAPTIVE_BACKOFF,
        plateau: float = ADAPTIVE_REST_TIME,
        max_pause: float = math.inf,
    ) -> None:
        #: Configured requests per second, the most the rate grows back to (``None``: none).
        self.ceiling = ceiling
        #: Share of a full measure the client drops to after a refusal.
        self.backoff = backoff
        #: Times a refusal lowered the rate.
        self.lowered = 0
        #: Most seconds a refusal pauses the client, whatever the server asks.
        self.max_pause = max_pause
        self._plateau = plateau
        self._sends = _Log()
        self._refused = _Log()
        self._epoch = -math.inf  # refusals of sends before this are the burst acted on
        self._held: float | None = None  # the rate the curve climbs back to
        self._floor = 0.0  # the rate right after the last lowering
        self._resume = -math.inf  # when the pause of the last decision ended
        self._first = math.inf  # the first send
        self._rest = 0.0  # seconds resting at the held rate (0 after a thin sample)
        self._kind = ""  # what the last decision was based on
        self._target = math.inf  # the rate the last decision took as the server's limit
        self._measured = 0.0  # what the last decision measured
        self._peak = 0.0  # the most a full sample measured the server to take

    def on_send(self, now: float) -> None:
        """Record a send at ``now``."""
        if self._first == math.inf:
            self._first = now
        self._sends.add(now)

    def on_refused(
        self, now: float, sent_at: float, wait: float | None, *, refused: bool = True
    ) -> Decision:
        """Decide about a refusal at ``now`` of the request sent at ``sent_at``.

        ``wait`` is the server's hint in seconds (``None``: none). With ``refused=False``
        the request got through but the server said its quota is spent (a remaining count
        of 0): the same decision, without counting that request as refused.
        """
        asked = RATE_LIMIT_PAUSE if wait is None else wait
        pause = min(asked, self.max_pause)
        if refused:
            self._refused.add(sent_at)
        if sent_at < self._epoch:
            return Decision(pause, asked, None, None)  # the same burst: already acted on
        sample = self._measure(sent_at, asked, including=not refused)
        if sample is None:
            return Decision(pause, asked, None, None)  # nothing got through: only the pause
        measured, took, sent_rate, sending, span = sample
        current = self.rate_at(now)
        # With no limit in force, what this client sent over the window is what it was
        # allowed (not its rate in the instant it sent: a burst says nothing of a second).
        allowed = (
            (took + self._refused.count(sent_at - span, sent_at)) / span
            if current is None
            else current
        )
        # What the rate allowed over the time the client was sending (a climbing rate
        # allowed less earlier in the window than now).
        was_allowed = self._allowed_over(sent_at - sending, sent_at, allowed)
        thin = sent_rate < _APP_LIMITED * was_allowed or took < min(
            ADAPTIVE_MIN_SAMPLE, _APP_LIMITED * was_allowed
        )
        climbed = self._resume + ADAPTIVE_RECOVER  # when the last climb back ended
        held_before = self._held if self._held is not None else math.inf
        rest = self._plateau
        if (
            thin
            and self._kind == _THIN
            and now < climbed + _AGAIN
            and self._taken_since(self._resume, sent_at) * (sent_at - self._resume) >= _AGREE_MIN
            and abs(measured - self._measured) <= _AGREE * self._measured
        ):
            # Refused again, the server having taken about as much since the last pause
            # (a second sample, not the first counted again): that is its limit.
            thin = False
        if thin:
            # A lower bound: back off from the rate in force, never below what was taken.
            kind, target = _THIN, allowed
            rest = 0.0
        elif (
            self._kind in _LEVELS
            and now > climbed + self._rest
            and _TOOK_LESS * held_before <= measured <= held_before / _TOOK_LESS
        ):
            # A probe above the rate held without a refusal failed, and the server took
            # about that rate: rest at what it took before the next probe (with others on
            # the key, each keeps what the server gave it: proportional to its rate, as
            # the probe's growth is the same for all, so shares converge).
            kind, target = _PROBED, min(measured, held_before)
        elif measured < _TOOK_LESS * allowed:
            # The server took clearly less than this client sent: that is its limit.
            kind, target = _MEASURED, measured
        elif not refused:
            # The server took the request and said its quota is spent: the rate is at the
            # limit, not over it (no refusal to say a measure ran high or the limit fell).
            kind, target = _SATURATED, min(measured, allowed)
        elif (
            self._kind == _MEASURED
            and now < climbed + _AGAIN
            and measured >= _TOOK_LESS * self._target
        ):
            # Refused again right after a measure, the server taking about as much: the
            # measure ran a little high (a window counted across its edge, a burst the
            # server had stored), the limit is a little below it.
            kind, target = _SATURATED, min(measured, self._target) * self.backoff
        elif self._kind and now < climbed + _AGAIN:
            # Refused again right after backing off: the limit is well below (it fell).
            # What the server took since the last refusal, the pause included, says how
            # far, if it is a sample: the server took a sample's worth since, or refused
            # after a pause that left it room for one. A few taken after a short pause
            # are what a key others filled for a moment gives as well: the rate just
            # lowered stands (only the pause), until a third request sent since is refused:
            # a client refused again and again after short pauses is over the limit.
            needed = min(ADAPTIVE_MIN_SAMPLE, _APP_LIMITED * allowed)
            if (
                self._taken(self._epoch, sent_at) < needed
                and allowed * (self._resume - self._epoch) < needed
                and self._refused.count(self._epoch, sent_at) < 2
            ):
                return Decision(pause, asked, None, None)
            kind, target = (
                _SATURATED,
                max(self._taken_since(self._epoch, sent_at), allowed * _FELL_BACKOFF),
            )
        elif self._kind in _LEVELS and now > climbed:
            # Refused while resting at the rate held: the last measure ran high (a token
            # bucket's stored burst): further below it.
            kind, target = _SATURATED, min(measured, allowed) * _RESTING_BACKOFF
        else:
            # It took about all it was sent, then refused: the limit is just below.
            kind, target = _SATURATED, allowed
        sent = sent_rate * sending if math.isfinite(sent_rate) else took
        few = sent - took <= max(_FEW_REFUSED, _FEW_REFUSED_SHARE * sent)
        if (kind == _SATURATED or (kind in (_MEASURED, _PROBED) and few)) and (
            allowed < _SHARING * self._peak
        ):
            # Refused while sending well below the most the server ever took from it, and
            # the server took about all it was sent (a few refused at most): others on
            # the key filled it. A full key says nothing of this client's share: keep
            # the rate in force (the small client is not the one to give way: it is not
            # starved) and probe again at once.
            target, rest = allowed, 0.0
        if not thin:
            self._peak = max(self._peak, measured)
        if kind == _THIN:
            rate, held = max(measured, allowed * ADAPTIVE_THIN_BACKOFF), allowed
        else:
            rate, held = target * self.backoff, target * ADAPTIVE_REST
        rate = max(ADAPTIVE_MIN_RATE, rate)
        # Below the rate where the probe's growth is the same for every client, the rest
        # shortens with the rate held: on a key others share, the small client probes
        # first, into what the others leave, and climbs towards its share.
        rest = min(rest, rest * held / _SMALL)
        self._target = target
        self._measured = measured
        self._held = max(rate, held)
        self._floor = rate
        self._rest = rest
        self._kind = kind
        self._resume = now + pause
        self._epoch = now
        self.lowered += 1
        return Decision(pause, asked, rate, measured, thin=thin)

    @property
    def epoch(self) -> float:
        """Refusals of requests sent before this belong to the burst already acted on."""
        return self._epoch

    def state(self) -> RateState:
        """The state the decisions left behind (not the logs), for ``restore``."""
        return RateState(
            self._epoch,
            self._held,
            self._floor,
            self._resume,
            self._rest,
            self._kind,
            self._target,
            self._measured,
            self.lowered,
            self._peak,
        )

    def restore(self, state: RateState) -> None:
        """Take back a state ``state()`` exported (the logs are not part of it)."""
        self._epoch = state.epoch
        self._held = state.held
        self._floor = state.floor
        self._resume = state.resume
        self._rest = state.rest
        self._kind = state.kind
        self._target = state.target
        self._measured = state.measured
        self.lowered = state.lowered
        self._peak = state.peak

    def replay(
        self, first: float | None, sends: Iterable[float], refusals: Iterable[float]
    ) -> None:
        """Load logs kept elsewhere: the first send (if known), sends, refused sends' times."""
        if first is not None:
            self._first = first
        for t in sends:
            self.on_send(t)
        for t in refusals:
            self._refused.add(t)

    def rate_at(self, now: float) -> float | None:
        """Requests per second allowed at ``now`` (``None``: no limit)."""
        held = self._held
        if held is None:
            return self.ceiling
        t = now - self._resume
        if t <= 0:
            rate = self._floor
        elif t < ADAPTIVE_RECOVER:
            # Concave: most of the way back in the first moments, whatever the fall.
            rate = held - (held - self._floor) * (1.0 - t / ADAPTIVE_RECOVER) ** 3
        else:
            probe = (t - ADAPTIVE_RECOVER - self._rest) / ADAPTIVE_PROBE
            rate = held
            if probe > 0:
                rate += max(ADAPTIVE_PROBE_STEP, ADAPTIVE_PROBE_GAIN * held) * probe**3
        if self.ceiling is not None and rate >= self.ceiling:
            return self.ceiling
        return rate

    def _allowed_over(self, start: float, end: float, now_allowed: float) -> float:
        """The mean rate allowed over ``[start, end]`` (``now_allowed`` when there is none)."""
        if self._held is None or end <= start:
            return now_allowed
        rates = [self.rate_at(start + (end - start) * i / 4) for i in range(5)]
        known = [r for r in rates if r is not None]
        return sum(known) / len(known) if known else now_allowed

    def _taken(self, start: float, end: float) -> int:
        """How many of the requests sent in ``[start, end)`` the server took."""
        return max(0, self._sends.count(start, end) - self._refused.count(start, end))

    def _taken_since(self, start: float, end: float) -> float:
        """Requests per second the server took of those sent in ``[start, end)``."""
        if end <= start:
            return 0.0
        return self._taken(start, end) / (end - start)

    def _measure(
        self, sent_at: float, wait: float, *, including: bool
    ) -> tuple[float, int, float, float, float] | None:
        """Measure the server's window before ``sent_at``.

        Returns what the server took per second and in all, this client's send rate over
        the part of the window it could send in, how long that part was, and the seconds
        the server's window is taken to span.
        """
        long = wait > _LONG_WAIT
        paused = 0.0
        window = 1.0
        if long:
            start = sent_at - min(wait, _MAX_SPAN)
        else:
            # Up to _WINDOW seconds of sending (a fixed window counted across its edge,
            # or a bucket's stored burst, weigh less over two seconds than over one);
            # a window that spans the last pause reaches back over it.
            window = min(_WINDOW, max(1.0, sent_at - self._first))
            start = sent_at - window
            if self._resume > start:
                paused = self._resume - self._epoch
                start -= paused
        sent = self._sends.count(start, sent_at, including=including)
        took = sent - self._refused.count(start, sent_at)
        if took <= 0:
            return None
        earliest = self._sends.first_from(start)
        span = 1.0 if long else window
        if long and earliest is not None:
            span = max(1.0, sent_at - earliest + wait)
        # This client's send rate while it could send: from its first send in the window,
        # not counting the pause.
        first = max(start, self._first)
        sending = sent_at - first - (paused if self._epoch >= first else 0.0)
        sent_rate = sent / sending if sending > 0 else math.inf
        return took / span, took, sent_rate, sending, span
