from google.protobuf import timestamp_pb2 as _timestamp_pb2
from qingyu.agent.v1 import agent_pb2 as _agent_pb2
from qingyu.agent.v1 import tool_pb2 as _tool_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

CANCEL_MODE_INTERRUPT: CancelMode
CANCEL_MODE_ROLLBACK: CancelMode
CANCEL_MODE_UNSPECIFIED: CancelMode
DESCRIPTOR: _descriptor.FileDescriptor
ON_DISCONNECT_CANCEL: OnDisconnect
ON_DISCONNECT_CONTINUE: OnDisconnect
ON_DISCONNECT_UNSPECIFIED: OnDisconnect
RUN_STATUS_CANCELLED: RunStatus
RUN_STATUS_COMPLETED: RunStatus
RUN_STATUS_FAILED: RunStatus
RUN_STATUS_QUEUED: RunStatus
RUN_STATUS_RUNNING: RunStatus
RUN_STATUS_UNSPECIFIED: RunStatus
RUN_STATUS_WAITING: RunStatus
SESSION_BUSY_ENQUEUE: SessionBusy
SESSION_BUSY_INTERRUPT: SessionBusy
SESSION_BUSY_REJECT: SessionBusy
SESSION_BUSY_ROLLBACK: SessionBusy
SESSION_BUSY_UNSPECIFIED: SessionBusy

class CancelRunRequest(_message.Message):
    __slots__ = ["mode", "run_id", "user_id"]
    MODE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    mode: CancelMode
    run_id: str
    user_id: str
    def __init__(self, run_id: _Optional[str] = ..., mode: _Optional[_Union[CancelMode, str]] = ..., user_id: _Optional[str] = ...) -> None: ...

class CancelRunResponse(_message.Message):
    __slots__ = ["run"]
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: Run
    def __init__(self, run: _Optional[_Union[Run, _Mapping]] = ...) -> None: ...

class GetRunRequest(_message.Message):
    __slots__ = ["run_id", "user_id"]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    user_id: str
    def __init__(self, run_id: _Optional[str] = ..., user_id: _Optional[str] = ...) -> None: ...

class GetRunResponse(_message.Message):
    __slots__ = ["run"]
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: Run
    def __init__(self, run: _Optional[_Union[Run, _Mapping]] = ...) -> None: ...

class ListRunsRequest(_message.Message):
    __slots__ = ["page_size", "page_token", "session_id", "statuses", "user_id"]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    session_id: str
    statuses: _containers.RepeatedScalarFieldContainer[RunStatus]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ..., session_id: _Optional[str] = ..., statuses: _Optional[_Iterable[_Union[RunStatus, str]]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListRunsResponse(_message.Message):
    __slots__ = ["next_page_token", "runs"]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    next_page_token: str
    runs: _containers.RepeatedCompositeFieldContainer[Run]
    def __init__(self, runs: _Optional[_Iterable[_Union[Run, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class PendingToolCall(_message.Message):
    __slots__ = ["call", "expire_time", "note", "reason", "step"]
    CALL_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    call: _tool_pb2.ToolCall
    expire_time: _timestamp_pb2.Timestamp
    note: str
    reason: str
    step: int
    def __init__(self, step: _Optional[int] = ..., call: _Optional[_Union[_tool_pb2.ToolCall, _Mapping]] = ..., reason: _Optional[str] = ..., expire_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., note: _Optional[str] = ...) -> None: ...

class Run(_message.Message):
    __slots__ = ["agent_id", "create_time", "error", "idempotency_key", "last_seq", "pending", "result", "run_id", "session_id", "status", "task", "update_time", "user_id"]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    create_time: _timestamp_pb2.Timestamp
    error: RunFailed
    idempotency_key: str
    last_seq: int
    pending: _containers.RepeatedCompositeFieldContainer[PendingToolCall]
    result: _agent_pb2.AgentResult
    run_id: str
    session_id: str
    status: RunStatus
    task: str
    update_time: _timestamp_pb2.Timestamp
    user_id: str
    def __init__(self, run_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., session_id: _Optional[str] = ..., user_id: _Optional[str] = ..., status: _Optional[_Union[RunStatus, str]] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., last_seq: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., result: _Optional[_Union[_agent_pb2.AgentResult, _Mapping]] = ..., error: _Optional[_Union[RunFailed, _Mapping]] = ..., pending: _Optional[_Iterable[_Union[PendingToolCall, _Mapping]]] = ..., task: _Optional[str] = ...) -> None: ...

class RunAccepted(_message.Message):
    __slots__ = ["run"]
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: Run
    def __init__(self, run: _Optional[_Union[Run, _Mapping]] = ...) -> None: ...

class RunCancelled(_message.Message):
    __slots__ = ["mode"]
    MODE_FIELD_NUMBER: _ClassVar[int]
    mode: CancelMode
    def __init__(self, mode: _Optional[_Union[CancelMode, str]] = ...) -> None: ...

class RunEvent(_message.Message):
    __slots__ = ["accepted", "cancelled", "completed", "delta", "failed", "run_id", "seq", "started", "step_finished", "step_restarted", "step_started", "time", "tool_call", "tool_call_delta", "tool_call_started", "tool_result", "waiting"]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    STEP_FINISHED_FIELD_NUMBER: _ClassVar[int]
    STEP_RESTARTED_FIELD_NUMBER: _ClassVar[int]
    STEP_STARTED_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_DELTA_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_STARTED_FIELD_NUMBER: _ClassVar[int]
    TOOL_RESULT_FIELD_NUMBER: _ClassVar[int]
    WAITING_FIELD_NUMBER: _ClassVar[int]
    accepted: RunAccepted
    cancelled: RunCancelled
    completed: _agent_pb2.AgentResult
    delta: _agent_pb2.TextDelta
    failed: RunFailed
    run_id: str
    seq: int
    started: _agent_pb2.Started
    step_finished: _agent_pb2.StepFinished
    step_restarted: StepRestarted
    step_started: _agent_pb2.StepStarted
    time: _timestamp_pb2.Timestamp
    tool_call: _agent_pb2.ToolCallEvent
    tool_call_delta: _agent_pb2.ToolCallDelta
    tool_call_started: _agent_pb2.ToolCallStarted
    tool_result: _agent_pb2.ToolResult
    waiting: RunWaiting
    def __init__(self, run_id: _Optional[str] = ..., seq: _Optional[int] = ..., time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., accepted: _Optional[_Union[RunAccepted, _Mapping]] = ..., started: _Optional[_Union[_agent_pb2.Started, _Mapping]] = ..., delta: _Optional[_Union[_agent_pb2.TextDelta, _Mapping]] = ..., step_started: _Optional[_Union[_agent_pb2.StepStarted, _Mapping]] = ..., tool_call_started: _Optional[_Union[_agent_pb2.ToolCallStarted, _Mapping]] = ..., tool_call_delta: _Optional[_Union[_agent_pb2.ToolCallDelta, _Mapping]] = ..., tool_call: _Optional[_Union[_agent_pb2.ToolCallEvent, _Mapping]] = ..., tool_result: _Optional[_Union[_agent_pb2.ToolResult, _Mapping]] = ..., step_finished: _Optional[_Union[_agent_pb2.StepFinished, _Mapping]] = ..., waiting: _Optional[_Union[RunWaiting, _Mapping]] = ..., step_restarted: _Optional[_Union[StepRestarted, _Mapping]] = ..., completed: _Optional[_Union[_agent_pb2.AgentResult, _Mapping]] = ..., failed: _Optional[_Union[RunFailed, _Mapping]] = ..., cancelled: _Optional[_Union[RunCancelled, _Mapping]] = ...) -> None: ...

class RunFailed(_message.Message):
    __slots__ = ["code", "message", "reason"]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    reason: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RunOptions(_message.Message):
    __slots__ = ["background", "caller_tools", "idempotency_key", "on_disconnect", "on_session_busy"]
    BACKGROUND_FIELD_NUMBER: _ClassVar[int]
    CALLER_TOOLS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    ON_DISCONNECT_FIELD_NUMBER: _ClassVar[int]
    ON_SESSION_BUSY_FIELD_NUMBER: _ClassVar[int]
    background: bool
    caller_tools: _containers.RepeatedCompositeFieldContainer[_tool_pb2.ToolSpec]
    idempotency_key: str
    on_disconnect: OnDisconnect
    on_session_busy: SessionBusy
    def __init__(self, background: bool = ..., idempotency_key: _Optional[str] = ..., on_session_busy: _Optional[_Union[SessionBusy, str]] = ..., on_disconnect: _Optional[_Union[OnDisconnect, str]] = ..., caller_tools: _Optional[_Iterable[_Union[_tool_pb2.ToolSpec, _Mapping]]] = ...) -> None: ...

class RunRequest(_message.Message):
    __slots__ = ["approval", "attach", "cancel", "start", "tool_results"]
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    ATTACH_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    TOOL_RESULTS_FIELD_NUMBER: _ClassVar[int]
    approval: SubmitApprovalRequest
    attach: WatchRunRequest
    cancel: CancelRunRequest
    start: StartRunRequest
    tool_results: SubmitToolResultsRequest
    def __init__(self, start: _Optional[_Union[StartRunRequest, _Mapping]] = ..., attach: _Optional[_Union[WatchRunRequest, _Mapping]] = ..., tool_results: _Optional[_Union[SubmitToolResultsRequest, _Mapping]] = ..., approval: _Optional[_Union[SubmitApprovalRequest, _Mapping]] = ..., cancel: _Optional[_Union[CancelRunRequest, _Mapping]] = ...) -> None: ...

class RunResponse(_message.Message):
    __slots__ = ["approval", "cancel", "event", "tool_results"]
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    TOOL_RESULTS_FIELD_NUMBER: _ClassVar[int]
    approval: SubmitApprovalResponse
    cancel: CancelRunResponse
    event: RunEvent
    tool_results: SubmitToolResultsResponse
    def __init__(self, event: _Optional[_Union[RunEvent, _Mapping]] = ..., tool_results: _Optional[_Union[SubmitToolResultsResponse, _Mapping]] = ..., approval: _Optional[_Union[SubmitApprovalResponse, _Mapping]] = ..., cancel: _Optional[_Union[CancelRunResponse, _Mapping]] = ...) -> None: ...

class RunWaiting(_message.Message):
    __slots__ = ["pending"]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    pending: _containers.RepeatedCompositeFieldContainer[PendingToolCall]
    def __init__(self, pending: _Optional[_Iterable[_Union[PendingToolCall, _Mapping]]] = ...) -> None: ...

class StartRunRequest(_message.Message):
    __slots__ = ["execute", "options"]
    EXECUTE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    execute: _agent_pb2.ExecuteRequest
    options: RunOptions
    def __init__(self, execute: _Optional[_Union[_agent_pb2.ExecuteRequest, _Mapping]] = ..., options: _Optional[_Union[RunOptions, _Mapping]] = ...) -> None: ...

class StartRunResponse(_message.Message):
    __slots__ = ["event"]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: RunEvent
    def __init__(self, event: _Optional[_Union[RunEvent, _Mapping]] = ...) -> None: ...

class StepRestarted(_message.Message):
    __slots__ = ["step"]
    STEP_FIELD_NUMBER: _ClassVar[int]
    step: int
    def __init__(self, step: _Optional[int] = ...) -> None: ...

class SubmitApprovalRequest(_message.Message):
    __slots__ = ["approved", "arguments", "message", "run_id", "tool_call_id", "user_id"]
    APPROVED_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    approved: bool
    arguments: str
    message: str
    run_id: str
    tool_call_id: str
    user_id: str
    def __init__(self, run_id: _Optional[str] = ..., tool_call_id: _Optional[str] = ..., approved: bool = ..., arguments: _Optional[str] = ..., message: _Optional[str] = ..., user_id: _Optional[str] = ...) -> None: ...

class SubmitApprovalResponse(_message.Message):
    __slots__ = ["decided", "run"]
    DECIDED_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    decided: bool
    run: Run
    def __init__(self, decided: bool = ..., run: _Optional[_Union[Run, _Mapping]] = ...) -> None: ...

class SubmitToolResultsRequest(_message.Message):
    __slots__ = ["results", "run_id", "user_id"]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ToolResultSubmission]
    run_id: str
    user_id: str
    def __init__(self, run_id: _Optional[str] = ..., results: _Optional[_Iterable[_Union[ToolResultSubmission, _Mapping]]] = ..., user_id: _Optional[str] = ...) -> None: ...

class SubmitToolResultsResponse(_message.Message):
    __slots__ = ["accepted", "run"]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    accepted: _containers.RepeatedScalarFieldContainer[str]
    run: Run
    def __init__(self, accepted: _Optional[_Iterable[str]] = ..., run: _Optional[_Union[Run, _Mapping]] = ...) -> None: ...

class ToolResultSubmission(_message.Message):
    __slots__ = ["output", "tool_call_id"]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_ID_FIELD_NUMBER: _ClassVar[int]
    output: _tool_pb2.ToolOutput
    tool_call_id: str
    def __init__(self, tool_call_id: _Optional[str] = ..., output: _Optional[_Union[_tool_pb2.ToolOutput, _Mapping]] = ...) -> None: ...

class WatchRunRequest(_message.Message):
    __slots__ = ["after_seq", "run_id", "user_id"]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    after_seq: int
    run_id: str
    user_id: str
    def __init__(self, run_id: _Optional[str] = ..., after_seq: _Optional[int] = ..., user_id: _Optional[str] = ...) -> None: ...

class WatchRunResponse(_message.Message):
    __slots__ = ["event"]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: RunEvent
    def __init__(self, event: _Optional[_Union[RunEvent, _Mapping]] = ...) -> None: ...

class RunStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class SessionBusy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class OnDisconnect(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class CancelMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
