"""Wallet: the click log, budgets, settlement and obligations (pure money logic)."""
