"""The names `keel.storage` took over from this module, for the modules that still import them here.

New code imports them from `keel.storage`.
"""

from ..storage import Approval, RunRecord, Store
from ..storage._tables import approvals, runs, steps

__all__ = ["Approval", "RunRecord", "Store", "approvals", "runs", "steps"]
