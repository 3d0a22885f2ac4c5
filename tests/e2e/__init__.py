"""End-to-end tests: real local servers driven over HTTP."""
