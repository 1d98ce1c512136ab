"""keel's tables and the read model over them: what the server, observers and the CLI read back."""

from ._journal_events import StepCall, event_dict, journal_marks, read_events, status_event, step_calls

__all__ = ["StepCall", "event_dict", "journal_marks", "read_events", "status_event", "step_calls"]
