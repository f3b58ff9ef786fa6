"""sync_service package."""
