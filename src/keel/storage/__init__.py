"""keel's own tables and the read model over them.

Every keel table is declared in `keel.storage._tables` on one metadata and created by one ordered list
of migrations (`keel.storage._migrations`, recorded in ``keel_schema``). `Store` reads and writes the
run index, the journal, approvals and worker heartbeats; the functions here read and write API keys,
feedback, alerts, counters and eval results, and return typed records. The server, the observers, the
CLI, the policies and the evals use these; only `keel.storage` and `keel.durable` touch a table.
"""

from ._alerts import FinishedRun, active_alerts, claim_alert, finished_runs, resolve_alert
from ._counters import Counters
from ._database import make_engine
from ._evals import eval_history, eval_report, eval_trial_rows, insert_eval
from ._feedback import Feedback, insert_feedback, select_feedback
from ._journal_events import StepCall, event_dict, journal_marks, read_events, status_event, step_calls
from ._keys import ApiKey, insert_key, key_by_hash, select_keys, set_key_revoked
from ._migrations import MIGRATIONS, migrate
from ._records import Approval, RunRecord
from ._stats import DecidedRequest, PendingRequests, Rating, RunStats, RunSummary, ratings, run_stats
from ._store import Store

__all__ = [
    "step_calls",
    "status_event",
    "read_events",
    "journal_marks",
    "event_dict",
    "StepCall",
    "MIGRATIONS",
    "ApiKey",
    "Approval",
    "Counters",
    "DecidedRequest",
    "Feedback",
    "FinishedRun",
    "PendingRequests",
    "Rating",
    "RunRecord",
    "RunStats",
    "RunSummary",
    "Store",
    "active_alerts",
    "claim_alert",
    "eval_history",
    "eval_report",
    "eval_trial_rows",
    "finished_runs",
    "insert_eval",
    "insert_feedback",
    "insert_key",
    "key_by_hash",
    "make_engine",
    "migrate",
    "ratings",
    "resolve_alert",
    "run_stats",
    "select_feedback",
    "select_keys",
    "set_key_revoked",
]
