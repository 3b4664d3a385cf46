"""Panoply's SDK transport as the collector serves it: an unsigned SQS ``SendMessage``.

Matched by Content-Type (form-encoded POST to any path), not by path; see server.py.
"""

import hashlib
import re
import uuid
from typing import Dict, Optional
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from .base import ServiceReply, ServiceRequest, loads, source_id
from .store import Row, Store

__all__ = ["SQS_MAX_BODY_BYTES", "Panoply"]


SQS_MAX_BODY_BYTES = 262144
_SQS_NS = "http://queue.amazonaws.com/doc/2012-11-05/"
_ATTR_NAME = re.compile(r"MessageAttribute\.([0-9]+)\.Name", re.ASCII)


def _sqs_error(status: int, code: str, message: str) -> ServiceReply:
    xml = (
        f'<?xml version="1.0"?><ErrorResponse xmlns="{_SQS_NS}"><Error><Type>Sender</Type>'
        f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message><Detail/></Error>"
        f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    )
    return ServiceReply(status, xml.encode("utf-8"), "text/xml")


class Panoply:
    """Panoply's SDK: an unsigned SQS ``SendMessage`` to any queue path.

    The form is decoded the standard way, so the official client's raw newlines and a
    standards-following client's ``%0A`` give the same MessageBody; a raw ``+`` in the
    official client's secret decodes to a space, which is fine since only presence is
    checked. The secret is never stored: only the records are.
    """

    name = "panoply"
    routes: Dict[str, Dict[str, str]] = {}  # matched by Content-Type, see server.py

    def __init__(self, store: Store) -> None:
        self.store = store

    @staticmethod
    def wants(content_type: Optional[str]) -> bool:
        media = (content_type or "").split(";", 1)[0].strip().lower()
        return media == "application/x-www-form-urlencoded"

    def post(self, req: ServiceRequest) -> ServiceReply:
        try:
            text = req.body.decode("utf-8")
        except UnicodeDecodeError:
            return _sqs_error(400, "MalformedQueryString", "The request body is not valid UTF-8.")
        form = parse_qs(text, keep_blank_values=True)

        def first(name: str) -> Optional[str]:
            values = form.get(name)
            return values[0] if values else None

        action = first("Action")
        if action is None:
            return _sqs_error(
                400, "MissingAction", "The request must contain the parameter Action."
            )
        if action != "SendMessage":
            return _sqs_error(
                400, "InvalidAction", f"The action {action} is not valid for this endpoint."
            )
        attrs = {}
        for name, values in form.items():
            m = _ATTR_NAME.fullmatch(name)
            if m:
                attrs[values[0]] = first(f"MessageAttribute.{m.group(1)}.Value.StringValue")
        if not attrs.get("key") or not attrs.get("secret"):
            return _sqs_error(
                403, "AccessDenied", "Access to the resource is denied: missing key or secret."
            )
        if len(req.body) > SQS_MAX_BODY_BYTES:
            return _sqs_error(
                400,
                "InvalidParameterValue",
                "One or more parameters are invalid. Reason: "
                f"Message must be shorter than {SQS_MAX_BODY_BYTES} bytes.",
            )
        message = first("MessageBody")
        if not message:
            return _sqs_error(
                400, "MissingParameter", "The request must contain the parameter MessageBody."
            )
        rows = []
        for i, chunk in enumerate(message.split("\n\n")):
            if not chunk.strip():
                continue
            try:
                record = loads(chunk)
            except ValueError as exc:
                return _sqs_error(400, "InvalidParameterValue", f"record {i} is not JSON: {exc}")
            if not isinstance(record, dict) or not isinstance(record.get("__table"), str):
                return _sqs_error(
                    400,
                    "InvalidParameterValue",
                    f"record {i} must be a JSON object with a string __table",
                )
            rows.append(
                Row(self.name, source_id(record.get("sourceId")), record["__table"], None, record)
            )
        if not rows:
            return _sqs_error(400, "InvalidParameterValue", "MessageBody holds no records.")
        self.store.insert(rows)
        md5 = hashlib.md5(message.encode("utf-8"), usedforsecurity=False).hexdigest()
        xml = (
            f'<?xml version="1.0"?><SendMessageResponse xmlns="{_SQS_NS}"><SendMessageResult>'
            f"<MessageId>{uuid.uuid4()}</MessageId><MD5OfMessageBody>{md5}</MD5OfMessageBody>"
            f"</SendMessageResult><ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId>"
            "</ResponseMetadata></SendMessageResponse>"
        )
        return ServiceReply(200, xml.encode("utf-8"), "text/xml")
