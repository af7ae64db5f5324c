"""Talking to the Pixxel API: the HTTP client, its retry policy and the request rate."""
