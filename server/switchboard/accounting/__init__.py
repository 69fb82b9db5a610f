"""Spend and call statistics per entity and period, in memory and shared through Redis.

`Ledger` is the face (`ledger.py` shows its use); the rest are the values
it takes and gives.
"""

from switchboard.accounting.ledger import Ledger, SyncStatus
from switchboard.accounting.periods import Period
from switchboard.accounting.records import AttemptRecord, CallRecord, Dimension
from switchboard.accounting.snapshot import CallStats, Snapshot, WindowSpend
from switchboard.accounting.windows import BudgetWindow

__all__ = [
    "AttemptRecord",
    "BudgetWindow",
    "CallRecord",
    "CallStats",
    "Dimension",
    "Ledger",
    "Period",
    "Snapshot",
    "SyncStatus",
    "WindowSpend",
]
