"""The evaluation harness: declarative suites, assertions, gates, runners and reports (`ai-factory eval`)."""
