"""param."""
