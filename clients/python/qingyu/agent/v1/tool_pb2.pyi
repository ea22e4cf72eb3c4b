from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
TOOL_OUTCOME_ABANDONED: ToolOutcome
TOOL_OUTCOME_CANCELLED: ToolOutcome
TOOL_OUTCOME_DENIED: ToolOutcome
TOOL_OUTCOME_ERROR: ToolOutcome
TOOL_OUTCOME_INVALID_ARGUMENTS: ToolOutcome
TOOL_OUTCOME_OK: ToolOutcome
TOOL_OUTCOME_SKIPPED: ToolOutcome
TOOL_OUTCOME_TIMEOUT: ToolOutcome
TOOL_OUTCOME_UNKNOWN: ToolOutcome
TOOL_OUTCOME_UNSPECIFIED: ToolOutcome

class CallToolRequest(_message.Message):
    __slots__ = ["agent_id", "arguments", "attempt", "idempotency_key", "name", "run_id", "session_id", "tool_call_id", "user_id"]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    arguments: str
    attempt: int
    idempotency_key: str
    name: str
    run_id: str
    session_id: str
    tool_call_id: str
    user_id: str
    def __init__(self, name: _Optional[str] = ..., arguments: _Optional[str] = ..., run_id: _Optional[str] = ..., tool_call_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., attempt: _Optional[int] = ..., agent_id: _Optional[str] = ..., user_id: _Optional[str] = ..., session_id: _Optional[str] = ...) -> None: ...

class CallToolResponse(_message.Message):
    __slots__ = ["output", "progress"]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    output: ToolOutput
    progress: ToolProgress
    def __init__(self, progress: _Optional[_Union[ToolProgress, _Mapping]] = ..., output: _Optional[_Union[ToolOutput, _Mapping]] = ...) -> None: ...

class ListToolsRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class ListToolsResponse(_message.Message):
    __slots__ = ["tools"]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    tools: _containers.RepeatedCompositeFieldContainer[ToolSpec]
    def __init__(self, tools: _Optional[_Iterable[_Union[ToolSpec, _Mapping]]] = ...) -> None: ...

class ToolCall(_message.Message):
    __slots__ = ["arguments", "name", "tool_call_id"]
    ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_ID_FIELD_NUMBER: _ClassVar[int]
    arguments: str
    name: str
    tool_call_id: str
    def __init__(self, tool_call_id: _Optional[str] = ..., name: _Optional[str] = ..., arguments: _Optional[str] = ...) -> None: ...

class ToolOutput(_message.Message):
    __slots__ = ["is_error", "output"]
    IS_ERROR_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    is_error: bool
    output: str
    def __init__(self, output: _Optional[str] = ..., is_error: bool = ...) -> None: ...

class ToolProgress(_message.Message):
    __slots__ = ["message", "progress", "total"]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    message: str
    progress: float
    total: float
    def __init__(self, message: _Optional[str] = ..., progress: _Optional[float] = ..., total: _Optional[float] = ...) -> None: ...

class ToolSpec(_message.Message):
    __slots__ = ["description", "idempotent", "input_schema", "max_concurrency", "name", "needs_approval", "output_schema", "sequential", "timeout_ms"]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENT_FIELD_NUMBER: _ClassVar[int]
    INPUT_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NEEDS_APPROVAL_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    SEQUENTIAL_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    description: str
    idempotent: bool
    input_schema: _struct_pb2.Struct
    max_concurrency: int
    name: str
    needs_approval: bool
    output_schema: _struct_pb2.Struct
    sequential: bool
    timeout_ms: int
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., input_schema: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., output_schema: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., needs_approval: bool = ..., idempotent: bool = ..., sequential: bool = ..., timeout_ms: _Optional[int] = ..., max_concurrency: _Optional[int] = ...) -> None: ...

class ToolOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
