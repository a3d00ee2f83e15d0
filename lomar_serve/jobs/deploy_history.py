"""The rules of a model's deploy history: how a switch changes its stack of deployed versions, and how a stack that
disagrees with what the model repository publishes is repaired. Pure functions; the store (store.py) applies them
inside its transactions.

The stack lists the versions deployed for one model, oldest first: its top is the version that serves, the one
below it the rollback target. A version enters it only once it is published in config.pbtxt (after loading and
smoke-testing on every Triton, or by hand), so a rollback target is always a version that served.

A switch is written in two steps around the publish (lomar_serve/control_plane/deploy.py): a pending switch before
it, completed after it. The publish is the switch: a control plane killed (or a store that fails) between the two
leaves a pending switch that `repaired` resolves against what config.pbtxt publishes - completed when its version is
published, dropped when it is not. A stack whose top is not the published version without a pending switch (a
hand edit, a store written by an older control plane that recorded before publishing) is cut back to the published
version when the stack holds it, or extended with it when it does not, and the change is written to the history as
a `repair`.
"""
from __future__ import annotations

from dataclasses import dataclass

from lomar_serve.jobs.errors import NothingToRollBack

Stack = tuple[str, ...]
ACTIONS = ("deploy", "rollback", "repair")


@dataclass(frozen=True)
class PendingSwitch:
    """A switch begun but not yet completed in the history: its version may or may not have been published."""

    model: str
    action: str  # deploy | rollback
    version: str  # the version the switch publishes
    previous: str | None  # the version published when it began (None: none was)


@dataclass(frozen=True)
class Event:
    """One row of the deploy history."""

    action: str  # one of ACTIONS
    version: str  # the version that serves after it
    previous: str | None  # the version that served before it


def deployed(stack: Stack, version: str, baseline: str | None) -> tuple[Stack, Event]:
    """`version` serves now. `baseline`: what served before any recorded deploy (it becomes the rollback target of a
    model's first recorded deploy)."""
    previous = stack[-1] if stack else baseline
    new = list(stack)
    if not new and baseline and baseline != version:
        new.append(baseline)
    if not new or new[-1] != version:
        new.append(version)
    return tuple(new), Event("deploy", version, previous)


def rolled_back(stack: Stack) -> tuple[Stack, Event]:
    """The version below the top serves again. Raises NothingToRollBack when there is none."""
    if len(stack) < 2:
        raise NothingToRollBack("no earlier deployed version to roll back to")
    return stack[:-1], Event("rollback", stack[-2], stack[-1])


def agreeing(stack: Stack, published: str | None) -> tuple[Stack, list[Event]]:
    """The stack made to agree with the `published` version: cut back to its last occurrence (the versions above it
    did not serve after it), or extended with it (published by hand). Unchanged when it agrees already, is empty
    (the first deploy records what served before it), or nothing single is published (nothing to agree with)."""
    if not stack or published is None or stack[-1] == published:
        return stack, []
    if published in stack:
        new = stack[:len(stack) - stack[::-1].index(published)]
    else:
        new = (*stack, published)
    return new, [Event("repair", published, stack[-1])]


def completed(stack: Stack, pending: PendingSwitch) -> tuple[Stack, list[Event]]:
    """The stack after `pending`, whose version is published: first made to agree with what served when it began."""
    stack, events = agreeing(stack, pending.previous)
    if pending.action == "rollback" and len(stack) > 1 and stack[-2] == pending.version:
        stack, event = rolled_back(stack)
    else:
        stack, event = deployed(stack, pending.version, pending.previous)
    return stack, [*events, event]


def repaired(stack: Stack, pending: PendingSwitch | None, published: str | None) -> tuple[Stack, list[Event], bool]:
    """The stack made to agree with `published`, with the events to write and whether `pending` is resolved (to be
    deleted). A pending switch stays while nothing single is published: whether it switched cannot be told."""
    if pending is None:
        return (*agreeing(stack, published), False)
    if published is None:
        return stack, [], False
    events: list[Event] = []
    if published == pending.version:
        stack, events = completed(stack, pending)
    stack, more = agreeing(stack, published)
    return stack, [*events, *more], True
