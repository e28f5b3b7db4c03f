"""Why an MQTT connection failed, in one line a person can act on.

paho reports a refused CONNACK as a reason code and a failed connect as a socket or
TLS exception; these functions turn each into one log line that names the broker,
the cause and what to check (the password settings, the CA file, ``mqtts://``…).
"""

from __future__ import annotations

import logging
import socket
import ssl

from paho.mqtt.reasoncodes import ReasonCode

from common.settings import MqttEndpoint

__all__ = ["refusal_line", "failure_line", "closed_line"]

_AUTH_CODES = {4, 5, 0x86, 0x87, 0x8C}  # 3.1.1: 4, 5; MQTT 5: 0x86, 0x87, 0x8C

_CREDENTIALS = "TWIN_MQTT_URL / TWIN_MQTT_USERNAME / TWIN_MQTT_PASSWORD / TWIN_MQTT_PASSWORD_FILE"


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def refusal_line(endpoint: MqttEndpoint, rc: ReasonCode) -> str:
    """One line: the broker answered the CONNECT with a refusal ``rc``; why, what to check."""
    if rc.value in _AUTH_CODES:
        if endpoint.username:
            hint = f"check the user name {endpoint.username!r} and its password: {_CREDENTIALS}"
        else:
            hint = f"no user name is set, and the broker wants one: {_CREDENTIALS}"
    elif rc.value == 0x85 or rc.value == 2:
        hint = "the broker does not accept this client id"
    elif rc.value == 0x8A:
        hint = "this client is banned by the broker"
    else:
        hint = "see the broker's log"
    return (f"MQTT broker {endpoint.url} refused the connection: {_lower_first(str(rc))} "
            f"({hint})")


def _tls_hint(endpoint: MqttEndpoint, exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = str(exc.verify_message or exc.reason or exc)
        if "mismatch" in why or "hostname" in why.lower():
            hint = (f"the broker's certificate is not made out to {endpoint.host!r}: connect "
                    "by a name or address the certificate lists")
        elif "expired" in why or "not yet valid" in why:
            hint = "the broker's certificate is outside its validity dates"
        elif endpoint.ca_file:
            hint = f"the broker's certificate is not signed by TWIN_MQTT_CA_FILE={endpoint.ca_file}"
        else:
            hint = ("the broker's certificate is not signed by a CA of this system: set "
                    "TWIN_MQTT_CA_FILE to the CA that signed it")
        return f"certificate verify failed: {why} ({hint})"
    reason = str(exc.reason or "").upper()
    text = reason.lower().replace("_", " ") if reason else str(exc)
    if "WRONG_VERSION_NUMBER" in reason or "RECORD_LAYER" in reason or "PACKET_LENGTH" in reason:
        hint = (f"port {endpoint.port} does not speak TLS: use mqtt:// for a plain listener, "
                "or the broker's TLS port")
    elif "CERTIFICATE_REQUIRED" in reason or (
            "HANDSHAKE_FAILURE" in reason and not endpoint.cert_file):
        hint = ("the broker wants a client certificate: set TWIN_MQTT_CERT_FILE and "
                "TWIN_MQTT_KEY_FILE")
    elif any(k in reason for k in ("BAD_CERTIFICATE", "UNKNOWN_CA", "CERTIFICATE_UNKNOWN",
                                   "CERTIFICATE_EXPIRED", "DECRYPT_ERROR")):
        hint = (f"the broker refused our client certificate TWIN_MQTT_CERT_FILE="
                f"{endpoint.cert_file}: is it signed by a CA the broker trusts, and valid?")
    elif "PROTOCOL_VERSION" in reason or "UNSUPPORTED_PROTOCOL" in reason:
        hint = "the broker offers no TLS 1.2 or newer"
    elif "EOF" in reason or not reason:
        hint = _not_tls_hint(endpoint)
    else:
        hint = "see the broker's log"
    return f"{text} ({hint})"


def _not_tls_hint(endpoint: MqttEndpoint) -> str:
    return (f"the broker closed the connection during the handshake: is port {endpoint.port} "
            "a TLS listener? mqtt:// is for a plain one; else see the broker's log")


def failure_line(endpoint: MqttEndpoint, exc: BaseException) -> tuple[int, str]:
    """(log level, one line) for a connection attempt that raised ``exc``: a TLS handshake
    failure or a bad configuration is an ERROR, an unreachable broker a WARNING."""
    where = f"{endpoint.host}:{endpoint.port}"
    if isinstance(exc, ssl.SSLError):
        return logging.ERROR, f"TLS handshake with MQTT broker {where} failed: " + _tls_hint(
            endpoint, exc)
    if endpoint.tls and isinstance(exc, ConnectionResetError | ConnectionAbortedError
                                   | BrokenPipeError):  # the TCP connection was up: handshake
        return logging.ERROR, (f"TLS handshake with MQTT broker {where} failed: "
                               f"{exc.strerror or exc} ({_not_tls_hint(endpoint)})")
    if isinstance(exc, ConnectionRefusedError):
        return logging.WARNING, (f"cannot reach MQTT broker {endpoint.url}: connection refused "
                                 "(is it running, and listening on this port?)")
    if isinstance(exc, socket.gaierror):
        return logging.ERROR, f"cannot reach MQTT broker {endpoint.url}: unknown host ({exc})"
    if isinstance(exc, TimeoutError):
        return logging.WARNING, f"cannot reach MQTT broker {endpoint.url}: no answer (timed out)"
    if isinstance(exc, OSError):
        return logging.WARNING, (f"cannot reach MQTT broker {endpoint.url}: "
                                 f"{exc.strerror or exc}")
    return logging.ERROR, f"cannot connect to MQTT broker {endpoint.url}: {exc}"


def closed_line(endpoint: MqttEndpoint, error: BaseException | None) -> tuple[int, str]:
    """(level, line) when the broker closed the connection before its CONNACK."""
    if isinstance(error, ssl.SSLError):
        return logging.ERROR, (f"MQTT broker {endpoint.url} ended the TLS session before "
                               f"answering: {_tls_hint(endpoint, error)}")
    why = f": {error}" if error is not None else ""
    if endpoint.tls:
        hint = "see the broker's log for why"
    else:
        hint = ("is it a TLS listener? then use mqtts:// (and TWIN_MQTT_CA_FILE); else see the "
                "broker's log")
    return logging.ERROR, (f"MQTT broker {endpoint.url} closed the connection without answering "
                           f"our CONNECT{why} ({hint})")


