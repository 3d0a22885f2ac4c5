"""Constructs: the CDK building blocks platform and product teams compose (gateway, features, data,
observability, governance)."""
