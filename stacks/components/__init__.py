"""Reusable constructs: each owns one logical unit (its resources, roles and cdk-nag acknowledgments)."""
