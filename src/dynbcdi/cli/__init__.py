"""Command-line interface (`dynbcdi <command> ...`)."""
