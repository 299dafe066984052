"""Fleet-safety telematics service."""
