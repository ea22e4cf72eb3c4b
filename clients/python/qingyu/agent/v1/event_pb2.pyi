from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
EVENT_TYPE_AGENT_COMPLETED: EventType
EVENT_TYPE_AGENT_STARTED: EventType
EVENT_TYPE_CHECKPOINT_SAVED: EventType
EVENT_TYPE_ERROR_OCCURRED: EventType
EVENT_TYPE_MIDDLEWARE_EXECUTED: EventType
EVENT_TYPE_RUN_CANCELLED: EventType
EVENT_TYPE_RUN_COMPLETED: EventType
EVENT_TYPE_RUN_FAILED: EventType
EVENT_TYPE_RUN_STARTED: EventType
EVENT_TYPE_RUN_WAITING: EventType
EVENT_TYPE_SESSION_CREATED: EventType
EVENT_TYPE_SESSION_DELETED: EventType
EVENT_TYPE_TOOL_CALLED: EventType
EVENT_TYPE_TOOL_COMPLETED: EventType
EVENT_TYPE_UNSPECIFIED: EventType

class Event(_message.Message):
    __slots__ = ["agent_id", "data", "event_id", "session_id", "time", "type", "user_id"]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    data: _struct_pb2.Struct
    event_id: str
    session_id: str
    time: _timestamp_pb2.Timestamp
    type: EventType
    user_id: str
    def __init__(self, event_id: _Optional[str] = ..., type: _Optional[_Union[EventType, str]] = ..., time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., agent_id: _Optional[str] = ..., session_id: _Optional[str] = ..., user_id: _Optional[str] = ..., data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ["agent_id", "types", "user_id"]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    types: _containers.RepeatedScalarFieldContainer[EventType]
    user_id: str
    def __init__(self, types: _Optional[_Iterable[_Union[EventType, str]]] = ..., agent_id: _Optional[str] = ..., user_id: _Optional[str] = ...) -> None: ...

class SubscribeResponse(_message.Message):
    __slots__ = ["event"]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: Event
    def __init__(self, event: _Optional[_Union[Event, _Mapping]] = ...) -> None: ...

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
