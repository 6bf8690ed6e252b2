"""One router per area, each a thin translation of HTTP into one `services` call."""
