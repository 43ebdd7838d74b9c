"""The marketing domain: concurrent A/B tests of a landing page (`variant.toml`) against a simulated market."""
