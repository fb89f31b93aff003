"""usage_pipeline: a usage and entitlement warehouse for SaaS vendor APIs."""

__version__ = "0.1.0"
