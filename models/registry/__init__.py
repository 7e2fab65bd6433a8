"""Model versions and deployments: the registry records training and deploy tools publish."""
