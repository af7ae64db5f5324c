"""A fake Pixxel API and the demo: generated jobs that behave like real ones."""
