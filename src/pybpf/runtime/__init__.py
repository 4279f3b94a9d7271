"""Run-time support shared by every tier: memory regions, helpers, machine state."""
