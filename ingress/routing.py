"""Who sent a command and where its replies go: MQTT 5 properties, read defensively.

A response topic is used only if one can publish to it and it is not a command or
system topic (a reply must never become a command for this or another controller);
the orchestrator is named by its user property ``client``, else its response topic.
"""

from __future__ import annotations

import hashlib
import logging

import paho.mqtt.client as mqtt

__all__ = ["CLIENT_PROPERTY", "response_route", "forbidden_response_topic", "user_properties",
           "client_of"]

log = logging.getLogger("twinctl.ingress")

CLIENT_PROPERTY = "client"
"""The MQTT 5 user property naming the orchestrator that sends a command (its jobs are
counted against ``TWIN_MAX_JOBS_PER_CLIENT``)."""


def response_route(msg: mqtt.MQTTMessage, prefix: str) -> tuple[str | None, bytes | None]:
    """(response topic, correlation data) of a command; the topic None where it cannot or
    must not be published to (the replies then go to the request's own reply topic)."""
    props = getattr(msg, "properties", None)
    topic = getattr(props, "ResponseTopic", None) if props is not None else None
    corr = getattr(props, "CorrelationData", None) if props is not None else None
    if topic and ("#" in topic or "+" in topic):
        topic = None  # not a topic one can publish to
    if topic and forbidden_response_topic(topic, prefix):
        log.warning("response topic %r refused (a system or command topic): replying on "
                    "the request's own reply topic", topic[:200])
        topic = None
    return topic or None, corr


def forbidden_response_topic(topic: str, prefix: str) -> bool:
    """A response topic may not make the controller publish commands or system
    messages: ``$…`` topics, and any ``…/cmd`` topic under this controller's prefix
    (its own, a peer's, a group's)."""
    return topic.startswith("$") or (topic.startswith(prefix + "/") and topic.endswith("/cmd"))


def user_properties(msg: mqtt.MQTTMessage) -> dict[str, str]:
    """The MQTT 5 user properties of a message (the first value of each name)."""
    props = getattr(msg, "properties", None)
    out: dict[str, str] = {}
    for item in getattr(props, "UserProperty", None) or ():
        if isinstance(item, tuple) and len(item) == 2:
            out.setdefault(str(item[0]), str(item[1]))
    return out


def client_of(props: dict[str, str], reply_to: str | None) -> str:
    """The orchestrator: its user property ``client``, else its response topic, else
    ``anonymous`` (a long name is kept by its digest)."""
    name = props.get(CLIENT_PROPERTY, "").strip() or reply_to or "anonymous"
    if len(name) > 128:
        name = "sha256:" + hashlib.sha256(name.encode("utf-8", "replace")).hexdigest()
    return name
