"""An in-process Flower ``Grid``: runs a ClientApp for every node in this process, without Ray.

Flower 1.41's ``run_simulation`` needs Ray (``flwr[simulation]``); this grid calls
``ClientApp.__call__(message, context)`` directly, so a strategy written for Flower's message
API (``flwr.serverapp``) runs unchanged in tests and in ``owm sim fl``. An optional ``tamper``
hook sees each batch of instructions and replies and may replace replies: the simulations use
it to play the colluding Byzantine adversary.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

Tamper = Callable[[Sequence[Message], list[Message]], list[Message]]
NODE_ID_BASE = 1000


class InProcessGrid(Grid):
    """Nodes ``NODE_ID_BASE + i`` with ``node_configs[i]``, all served by ``client_app``."""

    def __init__(
        self,
        client_app: ClientApp,
        node_configs: Sequence[Mapping[str, bool | float | int | str]],
        run_config: Mapping[str, bool | float | int | str] | None = None,
        *,
        run_id: int = 1,
        tamper: Tamper | None = None,
    ) -> None:
        self._app = client_app
        self._run = Run.create_empty(run_id)
        self._tamper = tamper
        self._ids = itertools.count(1)
        self._pending: dict[str, Message] = {}
        self._replies: dict[str, Message] = {}
        self.contexts = {
            NODE_ID_BASE + i: Context(
                run_id=run_id,
                node_id=NODE_ID_BASE + i,
                node_config=dict(cfg),
                state=RecordDict(),
                run_config=dict(run_config or {}),
            )
            for i, cfg in enumerate(node_configs)
        }
        # Messages built by strategies take their source from the task identity.
        TaskIdentity.task_id = 1
        TaskIdentity.run_id = run_id
        TaskIdentity.node_id = SUPERLINK_NODE_ID

    def set_run(self, run: Run) -> None:
        """Adopt ``run``."""
        self._run = run

    @property
    def run(self) -> Run:
        """The run this grid serves."""
        return self._run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        """A new instruction message for ``dst_node_id``."""
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        """Every node of the grid."""
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Deliver and execute each message; its reply waits for :meth:`pull_messages`."""
        batch = list(messages)
        ids = []
        replies = []
        for msg in batch:
            msg_id = f"m{next(self._ids)}"
            msg.metadata.__dict__["_message_id"] = msg_id
            ids.append(msg_id)
            replies.append(self._execute(msg))
        if self._tamper is not None:
            replies = self._tamper(batch, replies)
        for msg_id, reply in zip(ids, replies, strict=True):
            self._replies[msg_id] = reply
        return ids

    def _execute(self, msg: Message) -> Message:
        context = self.contexts.get(msg.metadata.dst_node_id)
        if context is None:
            return Message(Error(code=0, reason="unknown node"), reply_to=msg)
        try:
            return self._app(msg, context)
        except Exception as exc:  # a failing client is a failed reply, not a crashed server
            return Message(Error(code=0, reason=f"{type(exc).__name__}: {exc}"), reply_to=msg)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """The replies to ``message_ids`` (all are ready: execution is synchronous)."""
        return [self._replies.pop(i) for i in message_ids if i in self._replies]

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Push, execute and return every reply."""
        return self.pull_messages(self.push_messages(messages))
