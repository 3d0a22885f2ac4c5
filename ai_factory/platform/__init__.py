"""Platform plumbing every construct shares: secure defaults, cdk-nag packs and acknowledgements, custom
resources and Lambda packaging."""
