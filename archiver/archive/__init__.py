"""Writing the archive: decode and type a payload, plan its diff, write it with its history."""
