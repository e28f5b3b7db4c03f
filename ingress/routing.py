"""Who sent a command and where its replies go: MQTT 5 properties, read defensively.

A response topic is used only if it is confined (:func:`confine`): at most
:data:`MAX_TOPIC_BYTES` bytes and :data:`MAX_TOPIC_LEVELS` levels of printable
characters without wildcards, not a ``$`` topic, and nothing under the controllers'
prefix that is a controller's topic, except the request's own reply topic (a reply
must never become a command, a status, an alarm or another request's reply). A
refused one is replaced by the request's own reply topic, and the first reply says
why (``warnings``). Correlation
data over :data:`MAX_CORRELATION_BYTES` is dropped the same way (it would be echoed
in every reply). The orchestrator is named by its user property ``client``, else its
response topic.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from . import signing

__all__ = ["CLIENT_PROPERTY", "MAX_TOPIC_BYTES", "MAX_TOPIC_LEVELS", "MAX_CORRELATION_BYTES",
           "Route", "response_topic_of", "response_route", "confine", "user_properties",
           "client_of", "claimed_client"]

log = logging.getLogger("twinctl.ingress")

CLIENT_PROPERTY = "client"
"""The MQTT 5 user property naming the orchestrator that sends a command (its jobs are
counted against ``TWIN_MAX_JOBS_PER_CLIENT``)."""


MAX_TOPIC_BYTES = 256
"""The longest response topic used (UTF-8 bytes)."""
MAX_TOPIC_LEVELS = 16
"""The most levels of a response topic used (a broker refuses deep topics, e.g.
Mosquitto above 200 levels, and drops the publisher's connection)."""
MAX_CORRELATION_BYTES = 256
"""The longest correlation data echoed (it goes with every reply of the request)."""

CONTROLLER_TOPICS = ("cmd", "status", "errors", "alarms", "reply")
"""The topics of a controller, ``{prefix}/{cid}/<this>…``: never a response topic."""

_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufeff\ufffe\uffff]")


@dataclass(frozen=True)
class Route:
    """Where a command's replies go, as its MQTT 5 properties ask."""

    topic: str | None
    """the response topic (None: the request's own reply topic)"""
    correlation: bytes | None
    refused: tuple[str, ...] = ()
    """why a response topic or correlation data given was not used"""


def response_topic_of(msg: mqtt.MQTTMessage) -> str | None:
    """The MQTT 5 response topic of a message as given (not yet confined), or None."""
    props = getattr(msg, "properties", None)
    topic = getattr(props, "ResponseTopic", None) if props is not None else None
    return str(topic) if topic else None


def response_route(msg: mqtt.MQTTMessage, prefix: str, own: str | None) -> Route:
    """The response topic and correlation data of a command, each used only if it is
    confined; ``own`` is the request's own reply topic (None: the id is not known)."""
    props = getattr(msg, "properties", None)
    topic = response_topic_of(msg)
    corr = getattr(props, "CorrelationData", None) if props is not None else None
    refused: list[str] = []
    if topic:
        why = confine(topic, prefix, own)
        if why is not None:
            log.warning("response topic %r refused: %s", str(topic)[:80], why)
            refused.append(f"the response topic was not used ({why}); the replies go to "
                           f"{own or 'this controller'}")
            topic = None
    if corr is not None and len(corr) > MAX_CORRELATION_BYTES:
        refused.append(f"the correlation data ({len(corr)} bytes) was not echoed: at most "
                       f"{MAX_CORRELATION_BYTES} bytes")
        corr = None
    return Route(topic or None, corr, tuple(refused))


def confine(topic: str, prefix: str, own: str | None) -> str | None:
    """Why ``topic`` may not be a response topic, or None when it may."""
    if topic == own:
        return None
    if "#" in topic or "+" in topic:
        return "a topic with wildcards cannot be published to"
    if _UNPRINTABLE.search(topic):
        return "it has a control character or a code point that is not a character"
    if len(topic.encode("utf-8", "surrogatepass")) > MAX_TOPIC_BYTES:
        return f"longer than {MAX_TOPIC_BYTES} bytes"
    if topic.count("/") + 1 > MAX_TOPIC_LEVELS:
        return f"more than {MAX_TOPIC_LEVELS} levels"
    if topic.startswith("$"):
        return "a system ($) topic"
    if topic == prefix or topic.startswith(prefix + "/"):
        levels = topic[len(prefix) + 1:].split("/")
        if levels[0] in ("", "group") or (len(levels) > 1 and levels[1] in CONTROLLER_TOPICS):
            return (f"a topic of the controllers under {prefix!r} (a command, status, "
                    "errors, alarms or another request's reply topic)")
    return None


def user_properties(msg: mqtt.MQTTMessage) -> dict[str, str]:
    """The MQTT 5 user properties of a message (the first value of each name)."""
    props = getattr(msg, "properties", None)
    out: dict[str, str] = {}
    for item in getattr(props, "UserProperty", None) or ():
        if isinstance(item, tuple) and len(item) == 2:
            out.setdefault(str(item[0]), str(item[1]))
    return out


def claimed_client(msg: mqtt.MQTTMessage) -> str:
    """The orchestrator a message says it comes from, read cheaply before anything is
    checked (the inbox's fairness): the key named by its signature, else as
    :func:`client_of` says. Checked later: a wrong claim only shares the claimed
    orchestrator's queue, it gets nothing run."""
    props = user_properties(msg)
    signature = props.get(signing.SIGNATURE_PROPERTY)
    head = signature.encode("utf-8", "replace") if signature else bytes(msg.payload[:66])
    key, colon, _ = head.partition(b":")
    if colon and signing.KEY_NAME.match(key):
        return key.decode("ascii")
    return client_of(props, response_topic_of(msg))


def client_of(props: dict[str, str], reply_to: str | None) -> str:
    """The orchestrator: its user property ``client``, else its response topic, else
    ``anonymous`` (a long name is kept by its digest)."""
    name = props.get(CLIENT_PROPERTY, "").strip() or reply_to or "anonymous"
    if len(name) > 128:
        name = "sha256:" + hashlib.sha256(name.encode("utf-8", "replace")).hexdigest()
    return name
