"""Records written by confluent-kafka's real Schema Registry serializers, for the tests.

`serializers(url)` gives Avro, Protobuf and JSON Schema serializers talking to
a registry (tests/registry_server.py). The Protobuf message class is built at
test time with protobuf's descriptor APIs (no protoc): a file whose second
top-level message has a nested message, so that message's index path is
[1, 0], not [0].
"""

from __future__ import annotations

import json
from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.message_factory import GetMessageClass

ORDER_PLACED_AVRO = json.dumps({
    "type": "record", "name": "OrderPlaced", "namespace": "shop.orders",
    "fields": [
        {"name": "eventId", "type": "string"},
        {"name": "order", "type": {"type": "record", "name": "OrderRef", "fields": [
            {"name": "orderId", "type": "string"},
            {"name": "lines", "type": {"type": "array", "items": "string"}},
        ]}},
        {"name": "amountCents", "type": "long"},
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
})

PAYMENT_JSON_SCHEMA = json.dumps({
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "PaymentCaptured", "type": "object",
    "properties": {"orderId": {"type": "string"}, "amount": {"type": "number"}},
    "required": ["orderId"],
})

_PROTO_CLASSES: dict[str, Any] = {}


def proto_classes() -> dict[str, Any]:
    """`Envelope` (index [0]) and `OrderEvents.OrderShipped` (index [1, 0]) message classes."""
    if _PROTO_CLASSES:
        return _PROTO_CLASSES
    fdp = descriptor_pb2.FileDescriptorProto(name="lagdeck_test/shipping.proto",
                                             package="shop.shipping", syntax="proto3")
    env = fdp.message_type.add(name="Envelope")
    env.field.add(name="source", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
                  label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    events = fdp.message_type.add(name="OrderEvents")
    shipped = events.nested_type.add(name="OrderShipped")
    str_t = descriptor_pb2.FieldDescriptorProto.TYPE_STRING
    opt = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
    shipped.field.add(name="shipment_id", number=1, type=str_t, label=opt)
    detail = shipped.nested_type.add(name="Detail")
    detail.field.add(name="order_id", number=1, type=str_t, label=opt)
    detail.field.add(name="carrier", number=2, type=str_t, label=opt)
    shipped.field.add(name="detail", number=2, label=opt,
                      type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
                      type_name=".shop.shipping.OrderEvents.OrderShipped.Detail")
    shipped.field.add(name="parcels", number=3, label=opt,
                      type=descriptor_pb2.FieldDescriptorProto.TYPE_INT64)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    _PROTO_CLASSES["Envelope"] = GetMessageClass(
        pool.FindMessageTypeByName("shop.shipping.Envelope"))
    _PROTO_CLASSES["OrderShipped"] = GetMessageClass(
        pool.FindMessageTypeByName("shop.shipping.OrderEvents.OrderShipped"))
    return _PROTO_CLASSES


_STRATEGY = {"subject.name.strategy.type": "TOPIC"}


def registry_client(url: str, **conf: Any) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": url, **conf})


class Writers:
    """The three serializers against one registry; `avro/proto/json(topic, obj)` -> bytes."""

    def __init__(self, url: str, **conf: Any) -> None:
        self.client = registry_client(url, **conf)
        self._avro = AvroSerializer(self.client, ORDER_PLACED_AVRO)
        self._json = JSONSerializer(PAYMENT_JSON_SCHEMA, self.client)
        self._proto = ProtobufSerializer(proto_classes()["OrderShipped"], self.client,
                                         {"use.deprecated.format": False})

    def avro(self, topic: str, obj: dict[str, Any]) -> bytes:
        return self._avro(obj, SerializationContext(topic, MessageField.VALUE))

    def json(self, topic: str, obj: dict[str, Any]) -> bytes:
        return self._json(obj, SerializationContext(topic, MessageField.VALUE))

    def proto(self, topic: str, **fields: Any) -> bytes:
        cls = proto_classes()["OrderShipped"]
        msg = cls(shipment_id=fields["shipment_id"], parcels=fields.get("parcels", 1))
        msg.detail.order_id = fields["order_id"]
        msg.detail.carrier = fields.get("carrier", "DHL")
        return self._proto(msg, SerializationContext(topic, MessageField.VALUE))

    def close(self) -> None:
        self.client.close()


def order_placed(order_id: str, event_id: str = "evt-1") -> dict[str, Any]:
    return {"eventId": event_id, "order": {"orderId": order_id, "lines": ["sku-1", "sku-2"]},
            "amountCents": 4200, "note": None}
