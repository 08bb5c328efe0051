"""Tearing down a node's rclpy entities: every kind, every failure logged and counted."""

from __future__ import annotations

from collections.abc import Callable

from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.service import Service
from rclpy.subscription import Subscription
from rclpy.timer import Timer


def destroy_all(node: Node, entities: list) -> int:
    """Destroy publishers, subscriptions, services and timers of ``node``.

    rclpy's ``destroy_*`` return False for an entity that is already gone (destroyed earlier
    or not this node's): harmless when tearing down, so only noted at debug level. An
    exception is not expected: it is logged with the entity's name and counted, and the
    remaining entities are destroyed all the same.

    Returns:
        How many raised.
    """
    failures = 0
    for entity in entities:
        destroy = _destroyer(node, entity)
        try:
            if not destroy(entity):
                node.get_logger().debug(f"{entity_name(entity)} was already destroyed")
        except Exception as exc:  # logged, counted and reported to the caller
            failures += 1
            node.get_logger().error(
                f"could not destroy {entity_name(entity)}: {type(exc).__name__}: {exc}"
            )
    return failures


def _destroyer(node: Node, entity) -> Callable[[object], bool]:
    for kind, destroy in (
        (Publisher, node.destroy_publisher),
        (Subscription, node.destroy_subscription),
        (Service, node.destroy_service),
        (Timer, node.destroy_timer),
    ):
        if isinstance(entity, kind):
            return destroy
    raise TypeError(f"the node does not make {type(entity).__name__} entities")


def entity_name(entity) -> str:
    """``publisher /diagnostics``, ``service /ranksam/segment``, ``timer``: for logs."""
    kind = type(entity).__name__.lower()
    name = getattr(entity, "topic_name", None) or getattr(entity, "srv_name", None)
    return f"{kind} {name}" if name else kind
