"""HTTP handlers: each parses the request, calls the domain or data layer, and serializes."""
