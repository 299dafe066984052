"""SQL of the insurer integration, one module per concern; no HTTP here."""
